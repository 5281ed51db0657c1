// cty's msgpack encoding of DynamicValue, type-directed in both directions.
//   unknown            → fixext1 type 0 (d4 00 00); a refined unknown is ext type 12 whose
//                        payload is a map {1: nullable, 2: string prefix, 3/4: number
//                        bounds, 5/6: collection length bounds}; cty reads any ext of
//                        length ≤ 1 as unknown.
//   number             → msgpack int when integral and within int64, otherwise a decimal
//                        string (cty accepts strings for numbers; floats would be lossy).
//   object             → a map holding every attribute of the type (missing ones as nil).
//   dynamic            → [type JSON, value].

import { CtyCodecError, fail } from "./codec.ts";
import { type CtyType, sortedAttributeNames } from "./types.ts";
import { CtyNumber, type CtyValue, Dynamic, isPlainObject, Unknown } from "./values.ts";

export { CtyCodecError, defineEntry } from "./codec.ts";
export { decodeMsgpack } from "./msgpack-decode.ts";

const textEncoder = new TextEncoder();
const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

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

  /** A fixstr of ASCII text, written in JS (cheaper than encoding it); false, writing nothing, otherwise. */
  ascii(text: string): boolean {
    this.ensure(1 + text.length);
    const start = this.length;
    this.buffer[start] = 0xa0 | text.length;
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) return false;
      this.buffer[start + 1 + i] = code;
    }
    this.length += 1 + text.length;
    return true;
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
  if (text.length < 32 && out.ascii(text)) return;
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

/** The same bytes as writeInteger for 0 ≤ value < 2^32. */
function writeSmallInteger(out: ByteWriter, value: number) {
  if (value < 128) out.u8(value);
  else if (value < 0x100) {
    out.u8(0xcc);
    out.u8(value);
  } else if (value < 0x10000) {
    out.u8(0xcd);
    out.u16(value);
  } else {
    out.u8(0xce);
    out.u32(value);
  }
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
  // Canonical text of at most 15 digits is an integer a double holds exactly, no BigInt needed.
  if (text.length <= 15 && !text.includes(".")) {
    const integer = Number(text);
    if (integer >= 0 && integer <= 0xffffffff) writeSmallInteger(out, integer);
    else writeInteger(out, BigInt(integer));
    return;
  }
  if (!text.includes(".")) {
    const integer = BigInt(text);
    if (integer >= INT64_MIN && integer <= UINT64_MAX) {
      writeInteger(out, integer);
      return;
    }
  }
  writeString(out, text);
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
      for (let index = 0; index < value.length; index++) {
        path.push(index);
        writeValue(out, type[1], value[index], path);
        path.pop();
      }
      return;
    }
    case "tuple": {
      if (!Array.isArray(value) || value.length !== type[1].length) fail(type, value, path);
      writeArrayHeader(out, value.length);
      for (let index = 0; index < value.length; index++) {
        path.push(index);
        writeValue(out, type[1][index] ?? "dynamic", value[index], path);
        path.pop();
      }
      return;
    }
    case "map": {
      if (!isPlainObject(value)) fail(type, value, path);
      const keys = Object.keys(value).sort();
      writeMapHeader(out, keys.length);
      for (const key of keys) {
        writeString(out, key);
        path.push(key);
        writeValue(out, type[1], value[key], path);
        path.pop();
      }
      return;
    }
    case "object": {
      if (!isPlainObject(value)) fail(type, value, path);
      const attributes = type[1];
      const names = sortedAttributeNames(attributes);
      for (const name of Object.keys(value)) {
        if (!(name in attributes)) throw new CtyCodecError(`unexpected attribute "${name}"`, [...path]);
      }
      writeMapHeader(out, names.length);
      for (const name of names) {
        writeString(out, name);
        path.push(name);
        writeValue(out, attributes[name] as CtyType, value[name] ?? null, path);
        path.pop();
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
