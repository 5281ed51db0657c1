// cty's msgpack encoding of DynamicValue, type-directed in both directions.
//   unknown            → fixext1 type 0 (d4 00 00); a refined unknown is ext type 12 whose
//                        payload is a map {1: nullable, 2: string prefix, 3/4: number
//                        bounds, 5/6: collection length bounds}; cty reads any ext of
//                        length ≤ 1 as unknown.
//   number             → msgpack int when integral and within int64, otherwise a decimal
//                        string (cty accepts strings for numbers; floats would be lossy).
//   object             → a map holding every attribute of the type (missing ones as nil).
//   dynamic            → [type JSON, value].

import { canonicalDecimal, exactDecimalOfDouble } from "./decimal.ts";
import { type CtyType, describeType, typeFromJson } from "./types.ts";
import { CtyNumber, type CtyValue, Dynamic, isPlainObject, type Refinement, Unknown } from "./values.ts";

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();
const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

export class CtyCodecError extends Error {
  readonly path: (string | number)[];

  constructor(message: string, path: (string | number)[]) {
    super(path.length ? `${formatPath(path)}: ${message}` : message);
    this.path = path;
  }
}

function formatPath(path: (string | number)[]): string {
  return path
    .map((step, index) => (typeof step === "number" ? `[${step}]` : index ? `.${step}` : step))
    .join("");
}

// ---------------------------------------------------------------- encoding

class ByteWriter {
  private buffer = new Uint8Array(512);
  private view = new DataView(this.buffer.buffer);
  length = 0;

  private ensure(bytes: number) {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + bytes));
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
    this.view = new DataView(grown.buffer);
  }

  u8(value: number) {
    this.ensure(1);
    this.buffer[this.length++] = value;
  }

  u16(value: number) {
    this.ensure(2);
    this.view.setUint16(this.length, value);
    this.length += 2;
  }

  u32(value: number) {
    this.ensure(4);
    this.view.setUint32(this.length, value);
    this.length += 4;
  }

  u64(value: bigint) {
    this.ensure(8);
    this.view.setBigUint64(this.length, BigInt.asUintN(64, value));
    this.length += 8;
  }

  raw(data: Uint8Array) {
    this.ensure(data.length);
    this.buffer.set(data, this.length);
    this.length += data.length;
  }

  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

function writeNil(out: ByteWriter) {
  out.u8(0xc0);
}

function writeString(out: ByteWriter, text: string) {
  const data = textEncoder.encode(text);
  if (data.length < 32) out.u8(0xa0 | data.length);
  else if (data.length < 0x100) {
    out.u8(0xd9);
    out.u8(data.length);
  } else if (data.length < 0x10000) {
    out.u8(0xda);
    out.u16(data.length);
  } else {
    out.u8(0xdb);
    out.u32(data.length);
  }
  out.raw(data);
}

function writeBinary(out: ByteWriter, data: Uint8Array) {
  if (data.length < 0x100) {
    out.u8(0xc4);
    out.u8(data.length);
  } else if (data.length < 0x10000) {
    out.u8(0xc5);
    out.u16(data.length);
  } else {
    out.u8(0xc6);
    out.u32(data.length);
  }
  out.raw(data);
}

function writeInteger(out: ByteWriter, value: bigint) {
  if (value >= 0n) {
    if (value < 128n) out.u8(Number(value));
    else if (value < 0x100n) {
      out.u8(0xcc);
      out.u8(Number(value));
    } else if (value < 0x10000n) {
      out.u8(0xcd);
      out.u16(Number(value));
    } else if (value < 0x100000000n) {
      out.u8(0xce);
      out.u32(Number(value));
    } else {
      out.u8(0xcf);
      out.u64(value);
    }
  } else if (value >= -32n) out.u8(0x100 + Number(value));
  else {
    out.u8(0xd3);
    out.u64(value);
  }
}

function writeArrayHeader(out: ByteWriter, length: number) {
  if (length < 16) out.u8(0x90 | length);
  else if (length < 0x10000) {
    out.u8(0xdc);
    out.u16(length);
  } else {
    out.u8(0xdd);
    out.u32(length);
  }
}

function writeMapHeader(out: ByteWriter, length: number) {
  if (length < 16) out.u8(0x80 | length);
  else if (length < 0x10000) {
    out.u8(0xde);
    out.u16(length);
  } else {
    out.u8(0xdf);
    out.u32(length);
  }
}

function writeUnknown(out: ByteWriter, value: Unknown) {
  const payload = value.refinementPayload;
  if (!payload || payload.length === 0) {
    out.raw(Uint8Array.of(0xd4, 0x00, 0x00));
    return;
  }
  if (payload.length < 0x100) {
    out.u8(0xc7);
    out.u8(payload.length);
  } else {
    out.u8(0xc8);
    out.u16(payload.length);
  }
  out.u8(12);
  out.raw(payload);
}

function writeNumber(out: ByteWriter, value: CtyNumber) {
  const text = value.text;
  if (!text.includes(".")) {
    const integer = BigInt(text);
    if (integer >= INT64_MIN && integer <= UINT64_MAX) {
      writeInteger(out, integer);
      return;
    }
  }
  writeString(out, text);
}

function fail(expected: CtyType, value: unknown, path: (string | number)[]): never {
  const got = value === undefined ? "undefined" : Array.isArray(value) ? "array" : typeof value;
  throw new CtyCodecError(`expected ${describeType(expected)}, got ${got}`, path);
}

function writeValue(out: ByteWriter, type: CtyType, value: CtyValue | undefined, path: (string | number)[]) {
  if (value === null) return writeNil(out);
  if (value instanceof Unknown) return writeUnknown(out, value);
  if (value === undefined) fail(type, value, path);
  if (typeof type === "string") {
    switch (type) {
      case "string":
        if (typeof value !== "string") fail(type, value, path);
        return writeString(out, value);
      case "bool":
        if (typeof value !== "boolean") fail(type, value, path);
        return out.u8(value ? 0xc3 : 0xc2);
      case "number":
        if (!(value instanceof CtyNumber)) fail(type, value, path);
        return writeNumber(out, value);
      case "dynamic": {
        if (!(value instanceof Dynamic)) fail(type, value, path);
        writeArrayHeader(out, 2);
        writeBinary(out, textEncoder.encode(JSON.stringify(value.type)));
        return writeValue(out, value.type, value.value, path);
      }
    }
  }
  switch (type[0]) {
    case "list":
    case "set": {
      if (!Array.isArray(value)) fail(type, value, path);
      writeArrayHeader(out, value.length);
      for (const [index, element] of value.entries()) writeValue(out, type[1], element, [...path, index]);
      return;
    }
    case "tuple": {
      if (!Array.isArray(value) || value.length !== type[1].length) fail(type, value, path);
      writeArrayHeader(out, value.length);
      for (const [index, element] of value.entries()) {
        writeValue(out, type[1][index] ?? "dynamic", element, [...path, index]);
      }
      return;
    }
    case "map": {
      if (!isPlainObject(value)) fail(type, value, path);
      const keys = Object.keys(value).sort();
      writeMapHeader(out, keys.length);
      for (const key of keys) {
        writeString(out, key);
        writeValue(out, type[1], value[key], [...path, key]);
      }
      return;
    }
    case "object": {
      if (!isPlainObject(value)) fail(type, value, path);
      const attributes = type[1];
      const names = Object.keys(attributes).sort();
      for (const name of Object.keys(value)) {
        if (!(name in attributes)) throw new CtyCodecError(`unexpected attribute "${name}"`, path);
      }
      writeMapHeader(out, names.length);
      for (const name of names) {
        writeString(out, name);
        writeValue(out, attributes[name] as CtyType, value[name] ?? null, [...path, name]);
      }
      return;
    }
  }
}

export function encodeMsgpack(type: CtyType, value: CtyValue): Uint8Array {
  const out = new ByteWriter();
  writeValue(out, type, value, []);
  return out.finish();
}

// ---------------------------------------------------------------- decoding

/** What the raw msgpack reader produces before the type gives it meaning. */
type Raw =
  | null
  | boolean
  | number
  | bigint
  | { float: number }
  | string
  | Uint8Array
  | Raw[]
  | Map<Raw, Raw>
  | { extType: number; data: Uint8Array };

class ByteReader {
  private offset = 0;
  private readonly view: DataView;
  private readonly data: Uint8Array;

  constructor(data: Uint8Array) {
    this.data = data;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  get atEnd(): boolean {
    return this.offset >= this.data.length;
  }

  private take(bytes: number): number {
    const at = this.offset;
    if (at + bytes > this.data.length) throw new Error("msgpack: truncated value");
    this.offset += bytes;
    return at;
  }

  private u8 = () => this.view.getUint8(this.take(1));
  private u16 = () => this.view.getUint16(this.take(2));
  private u32 = () => this.view.getUint32(this.take(4));

  private bytes(length: number): Uint8Array {
    const at = this.take(length);
    return this.data.subarray(at, at + length);
  }

  private str(length: number): string {
    return textDecoder.decode(this.bytes(length));
  }

  private array(length: number): Raw[] {
    const out: Raw[] = [];
    for (let i = 0; i < length; i++) out.push(this.read());
    return out;
  }

  private map(length: number): Map<Raw, Raw> {
    const out = new Map<Raw, Raw>();
    for (let i = 0; i < length; i++) {
      const key = this.read();
      out.set(key, this.read());
    }
    return out;
  }

  private ext(length: number): Raw {
    const extType = this.view.getInt8(this.take(1));
    return { extType, data: this.bytes(length) };
  }

  private int64(): bigint | number {
    const value = this.view.getBigInt64(this.take(8));
    return Number.isSafeInteger(Number(value)) ? Number(value) : value;
  }

  private uint64(): bigint | number {
    const value = this.view.getBigUint64(this.take(8));
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  read(): Raw {
    const tag = this.u8();
    if (tag < 0x80) return tag;
    if (tag >= 0xe0) return tag - 0x100;
    if ((tag & 0xf0) === 0x80) return this.map(tag & 0x0f);
    if ((tag & 0xf0) === 0x90) return this.array(tag & 0x0f);
    if ((tag & 0xe0) === 0xa0) return this.str(tag & 0x1f);
    switch (tag) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bytes(this.u8());
      case 0xc5:
        return this.bytes(this.u16());
      case 0xc6:
        return this.bytes(this.u32());
      case 0xc7:
        return this.ext(this.u8());
      case 0xc8:
        return this.ext(this.u16());
      case 0xc9:
        return this.ext(this.u32());
      case 0xca:
        return { float: this.view.getFloat32(this.take(4)) };
      case 0xcb:
        return { float: this.view.getFloat64(this.take(8)) };
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf:
        return this.uint64();
      case 0xd0:
        return this.view.getInt8(this.take(1));
      case 0xd1:
        return this.view.getInt16(this.take(2));
      case 0xd2:
        return this.view.getInt32(this.take(4));
      case 0xd3:
        return this.int64();
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16());
      case 0xdd:
        return this.array(this.u32());
      case 0xde:
        return this.map(this.u16());
      case 0xdf:
        return this.map(this.u32());
    }
    throw new Error(`msgpack: unsupported tag 0x${tag.toString(16)}`);
  }
}

function isExt(raw: Raw): raw is { extType: number; data: Uint8Array } {
  return typeof raw === "object" && raw !== null && "extType" in raw;
}

function numberText(raw: Raw): string | undefined {
  if (typeof raw === "number" || typeof raw === "bigint") return String(raw);
  if (typeof raw === "string") return canonicalDecimal(raw);
  if (typeof raw === "object" && raw !== null && "float" in raw) return exactDecimalOfDouble(raw.float);
  return undefined;
}

function decodeRefinement(payload: Uint8Array): Refinement {
  const refinement: Refinement = {};
  if (payload.length === 0) return refinement;
  const raw = new ByteReader(payload).read();
  if (!(raw instanceof Map)) return refinement;
  const bound = (entry: Raw) => {
    if (!Array.isArray(entry)) return undefined;
    const value = numberText(entry[0] ?? null);
    return value === undefined ? undefined : { value, inclusive: entry[1] === true };
  };
  for (const [key, entry] of raw) {
    if (key === 1 && typeof entry === "boolean") refinement.nullable = entry;
    else if (key === 2 && typeof entry === "string") refinement.stringPrefix = entry;
    else if (key === 3) {
      const lower = bound(entry);
      if (lower) refinement.numberLowerBound = lower;
    } else if (key === 4) {
      const upper = bound(entry);
      if (upper) refinement.numberUpperBound = upper;
    } else if (key === 5 && typeof entry === "number") refinement.lengthLowerBound = entry;
    else if (key === 6 && typeof entry === "number") refinement.lengthUpperBound = entry;
  }
  return refinement;
}

function decodeTyped(type: CtyType, raw: Raw, path: (string | number)[]): CtyValue {
  if (raw === null) return null;
  if (isExt(raw)) {
    if (raw.data.length <= 1) return new Unknown();
    if (raw.extType === 12) return new Unknown(decodeRefinement(raw.data), raw.data.slice());
    throw new CtyCodecError(`unexpected msgpack extension ${raw.extType}`, path);
  }
  if (typeof type === "string") {
    switch (type) {
      case "string":
        if (typeof raw !== "string") fail(type, raw, path);
        return raw;
      case "bool":
        if (typeof raw !== "boolean") fail(type, raw, path);
        return raw;
      case "number": {
        const text = numberText(raw);
        if (text === undefined) fail(type, raw, path);
        return new CtyNumber(text);
      }
      case "dynamic": {
        if (!Array.isArray(raw) || raw.length !== 2) fail(type, raw, path);
        const typeJson = raw[0];
        const json = typeof typeJson === "string" ? typeJson : textDecoder.decode(typeJson as Uint8Array);
        const concrete = typeFromJson(JSON.parse(json));
        return new Dynamic(concrete, decodeTyped(concrete, raw[1] ?? null, path));
      }
    }
  }
  switch (type[0]) {
    case "list":
    case "set":
      if (!Array.isArray(raw)) fail(type, raw, path);
      return raw.map((element, index) => decodeTyped(type[1], element, [...path, index]));
    case "tuple":
      if (!Array.isArray(raw)) fail(type, raw, path);
      return raw.map((element, index) => decodeTyped(type[1][index] ?? "dynamic", element, [...path, index]));
    case "map": {
      if (!(raw instanceof Map)) fail(type, raw, path);
      const out: { [key: string]: CtyValue } = {};
      for (const [key, element] of raw) {
        if (typeof key !== "string") throw new CtyCodecError("map key is not a string", path);
        defineEntry(out, key, decodeTyped(type[1], element, [...path, key]));
      }
      return out;
    }
    case "object": {
      if (!(raw instanceof Map)) fail(type, raw, path);
      const out: { [key: string]: CtyValue } = {};
      for (const [name, attributeType] of Object.entries(type[1])) {
        defineEntry(out, name, decodeTyped(attributeType, raw.get(name) ?? null, [...path, name]));
      }
      return out;
    }
  }
  return fail(type, raw, path);
}

/** Keys such as "__proto__" are data here, never prototypes. */
export function defineEntry(target: { [key: string]: CtyValue }, key: string, value: CtyValue) {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

export function decodeMsgpack(type: CtyType, data: Uint8Array): CtyValue {
  const reader = new ByteReader(data);
  const raw = reader.read();
  if (!reader.atEnd) throw new Error("msgpack: trailing bytes after value");
  return decodeTyped(type, raw, []);
}
