// Decoding of cty's msgpack (the encoding is described in msgpack.ts). Containers are read
// straight into values under their type; the generic reader gives meaning-free values only
// for scalars, unknowns, skipped attributes and values that do not match their type (whose
// errors name what was found).

import { CtyCodecError, defineEntry, fail } from "./codec.ts";
import { canonicalDecimal, exactDecimalOfDouble } from "./decimal.ts";
import { attributeNames, type CtyType, typeFromJson } from "./types.ts";
import { CtyNumber, type CtyValue, Dynamic, type Refinement, Unknown } from "./values.ts";

const textDecoder = new TextDecoder();

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

/** Strings shorter than this are decoded in JS when ASCII: cheaper than a TextDecoder call. */
const SHORT_STRING = 32;

class ByteReader {
  offset = 0;
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
    const at = this.take(length);
    if (length < SHORT_STRING) {
      let text = "";
      for (let i = at; i < at + length; i++) {
        const byte = this.data[i] as number;
        if (byte >= 0x80) return textDecoder.decode(this.data.subarray(at, at + length));
        text += String.fromCharCode(byte);
      }
      return text;
    }
    return textDecoder.decode(this.data.subarray(at, at + length));
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

  /** The element count if an array header is next (and consumes it), else -1 (consuming nothing). */
  arrayHeader(): number {
    return this.header(0x90, 0xdc, 0xdd);
  }

  /** The entry count if a map header is next (and consumes it), else -1 (consuming nothing). */
  mapHeader(): number {
    return this.header(0x80, 0xde, 0xdf);
  }

  private header(fixed: number, with16: number, with32: number): number {
    const tag = this.data[this.offset];
    if (tag === undefined) return -1;
    if ((tag & 0xf0) === fixed) {
      this.offset++;
      return tag & 0x0f;
    }
    if (tag !== with16 && tag !== with32) return -1;
    this.offset++;
    return tag === with16 ? this.u16() : this.u32();
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

/** The value of `type` read next. */
function readTyped(type: CtyType, reader: ByteReader, path: (string | number)[]): CtyValue {
  if (typeof type === "string") {
    if (type !== "dynamic") return decodeTyped(type, reader.read(), path);
    const start = reader.offset;
    if (reader.arrayHeader() !== 2) {
      reader.offset = start;
      return decodeTyped(type, reader.read(), path);
    }
    return readDynamic(reader.read(), reader, path);
  }
  switch (type[0]) {
    case "list":
    case "set":
    case "tuple": {
      const length = reader.arrayHeader();
      if (length < 0) return decodeTyped(type, reader.read(), path);
      const out: CtyValue[] = [];
      for (let index = 0; index < length; index++) {
        path.push(index);
        out.push(readTyped(type[0] === "tuple" ? (type[1][index] ?? "dynamic") : type[1], reader, path));
        path.pop();
      }
      return out;
    }
    case "map": {
      const length = reader.mapHeader();
      if (length < 0) return decodeTyped(type, reader.read(), path);
      const out: { [key: string]: CtyValue } = {};
      for (let i = 0; i < length; i++) {
        const key = reader.read();
        if (typeof key !== "string") throw new CtyCodecError("map key is not a string", [...path]);
        path.push(key);
        defineEntry(out, key, readTyped(type[1], reader, path));
        path.pop();
      }
      return out;
    }
    case "object": {
      const length = reader.mapHeader();
      if (length < 0) return decodeTyped(type, reader.read(), path);
      const attributes = type[1];
      // Every attribute of the type, in the type's order; those the value leaves out are null.
      const out: { [key: string]: CtyValue } = {};
      for (const name of attributeNames(attributes)) defineEntry(out, name, null);
      for (let i = 0; i < length; i++) {
        const key = reader.read();
        const attributeType =
          typeof key === "string" && Object.hasOwn(attributes, key) ? attributes[key] : undefined;
        if (attributeType === undefined) {
          reader.read();
          continue;
        }
        path.push(key as string);
        defineEntry(out, key as string, readTyped(attributeType, reader, path));
        path.pop();
      }
      return out;
    }
  }
  return decodeTyped(type, reader.read(), path);
}

/** A dynamic value's [type JSON, value] pair, its type already read. */
function readDynamic(typeJson: Raw, reader: ByteReader, path: (string | number)[]): Dynamic {
  const json = typeof typeJson === "string" ? typeJson : textDecoder.decode(typeJson as Uint8Array);
  const concrete = typeFromJson(JSON.parse(json));
  return new Dynamic(concrete, readTyped(concrete, reader, path));
}

/** A raw value's meaning under `type`: null, unknown, a scalar, or an error naming what it is. */
function decodeTyped(type: CtyType, raw: Raw, path: (string | number)[]): CtyValue {
  if (raw === null) return null;
  if (isExt(raw)) {
    if (raw.data.length <= 1) return new Unknown();
    if (raw.extType === 12) return new Unknown(decodeRefinement(raw.data), raw.data.slice());
    throw new CtyCodecError(`unexpected msgpack extension ${raw.extType}`, [...path]);
  }
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
  }
  // readTyped reads containers and dynamic values itself: this one is not the array or map its type needs.
  return fail(type, raw, path);
}

export function decodeMsgpack(type: CtyType, data: Uint8Array): CtyValue {
  const reader = new ByteReader(data);
  const value = readTyped(type, reader, []);
  if (!reader.atEnd) throw new Error("msgpack: trailing bytes after value");
  return value;
}
