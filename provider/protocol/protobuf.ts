// Protobuf wire codec driven by a ProtoDescriptor. Messages are plain objects keyed by the
// .proto field names; enums are their value names; int64 fields are JS numbers (the
// protocol only carries small ones: schema versions, list indexes, item counts); bytes are
// Uint8Array. Decoding leaves absent message fields undefined, absent repeated fields [],
// and absent scalars at their proto3 default.

import type { FieldType, ProtoDescriptor, ProtoField, ProtoMessage } from "./proto-parser.ts";

export type ProtoObject = { [field: string]: unknown };

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

const MAP_KEY_TYPE: FieldType = { kind: "scalar", scalar: "string" };

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/**
 * One growable buffer for a whole message. A nested message is written in place after a
 * one-byte length placeholder, which is widened afterwards in the rare case the length needs
 * more: no buffer per nested message, no copying of each into its parent.
 */
class Writer {
  private buffer = new Uint8Array(512);
  private offset = 0;

  private ensure(bytes: number) {
    if (this.offset + bytes <= this.buffer.length) return;
    const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.offset + bytes));
    grown.set(this.buffer.subarray(0, this.offset));
    this.buffer = grown;
  }

  varint(value: number | bigint) {
    this.ensure(10);
    if (typeof value === "number" && value >= 0 && value < 2 ** 31) {
      let small = value;
      while (small > 0x7f) {
        this.buffer[this.offset++] = (small & 0x7f) | 0x80;
        small >>>= 7;
      }
      this.buffer[this.offset++] = small;
      return;
    }
    let remaining = BigInt.asUintN(64, BigInt(value));
    while (remaining > 0x7fn) {
      this.buffer[this.offset++] = Number(remaining & 0x7fn) | 0x80;
      remaining >>= 7n;
    }
    this.buffer[this.offset++] = Number(remaining);
  }

  bytes(data: Uint8Array) {
    this.ensure(data.length);
    this.buffer.set(data, this.offset);
    this.offset += data.length;
  }

  double(value: number) {
    this.ensure(8);
    new DataView(this.buffer.buffer).setFloat64(this.offset, value, true);
    this.offset += 8;
  }

  /** Writes what `body` writes, preceded by its length as a varint. */
  lengthDelimited(body: () => void) {
    this.ensure(1);
    const start = ++this.offset;
    body();
    const length = this.offset - start;
    if (length < 0x80) {
      this.buffer[start - 1] = length;
      return;
    }
    let extra = 0;
    for (let rest = length >>> 7; rest > 0; rest >>>= 7) extra++;
    this.ensure(extra);
    this.buffer.copyWithin(start + extra, start, this.offset);
    let at = start - 1;
    let rest = length;
    while (rest > 0x7f) {
      this.buffer[at++] = (rest & 0x7f) | 0x80;
      rest >>>= 7;
    }
    this.buffer[at] = rest;
    this.offset += extra;
  }

  finish(): Uint8Array {
    return this.buffer.slice(0, this.offset);
  }
}

export class ProtobufCodec {
  private readonly descriptor: ProtoDescriptor;
  private readonly enumNames = new Map<string, Map<number, string>>();
  private readonly fieldsByNumber = new Map<string, Map<number, ProtoField>>();

  constructor(descriptor: ProtoDescriptor) {
    this.descriptor = descriptor;
  }

  encode(typeName: string, value: ProtoObject): Uint8Array {
    const writer = new Writer();
    this.writeMessage(writer, typeName, value);
    return writer.finish();
  }

  decode(typeName: string, data: Uint8Array): ProtoObject {
    return this.readMessage(typeName, data);
  }

  private message(typeName: string): ProtoMessage {
    const message = this.descriptor.messages[typeName];
    if (!message) throw new Error(`protobuf: unknown message ${typeName}`);
    return message;
  }

  private writeMessage(writer: Writer, typeName: string, value: ProtoObject) {
    for (const field of this.message(typeName).fields) {
      const fieldValue = value[field.name];
      if (fieldValue === undefined || fieldValue === null) continue;
      if (field.mapValue) {
        const mapValue = field.mapValue;
        for (const [key, entryValue] of Object.entries(fieldValue as Record<string, unknown>)) {
          writer.varint((field.number << 3) | WIRE_LENGTH_DELIMITED);
          writer.lengthDelimited(() => {
            this.writeValue(writer, 1, MAP_KEY_TYPE, key, true);
            this.writeValue(writer, 2, mapValue, entryValue, true);
          });
        }
      } else if (field.repeated) {
        for (const element of fieldValue as unknown[])
          this.writeValue(writer, field.number, field.type, element, true);
      } else {
        this.writeValue(writer, field.number, field.type, fieldValue, field.explicitPresence);
      }
    }
  }

  private writeValue(writer: Writer, number: number, type: FieldType, value: unknown, always: boolean) {
    if (type.kind === "message") {
      writer.varint((number << 3) | WIRE_LENGTH_DELIMITED);
      writer.lengthDelimited(() => this.writeMessage(writer, type.typeName, value as ProtoObject));
      return;
    }
    if (type.kind === "enum") {
      const numeric =
        typeof value === "number" ? value : this.descriptor.enums[type.typeName]?.[value as string];
      if (numeric === undefined)
        throw new Error(`protobuf: ${String(value)} is not a value of ${type.typeName}`);
      if (numeric === 0 && !always) return;
      writer.varint(number << 3);
      writer.varint(numeric);
      return;
    }
    switch (type.scalar) {
      case "string":
      case "bytes": {
        const data = typeof value === "string" ? textEncoder.encode(value) : (value as Uint8Array);
        if (data.length === 0 && !always) return;
        writer.varint((number << 3) | WIRE_LENGTH_DELIMITED);
        writer.varint(data.length);
        writer.bytes(data);
        return;
      }
      case "bool":
        if (!value && !always) return;
        writer.varint(number << 3);
        writer.varint(value ? 1 : 0);
        return;
      case "double":
        if (value === 0 && !always) return;
        writer.varint((number << 3) | WIRE_FIXED64);
        writer.double(value as number);
        return;
      default: {
        const numeric = value as number | bigint;
        if ((numeric === 0 || numeric === 0n) && !always) return;
        writer.varint(number << 3);
        writer.varint(numeric);
      }
    }
  }

  private fieldIndex(typeName: string): Map<number, ProtoField> {
    let index = this.fieldsByNumber.get(typeName);
    if (!index) {
      index = new Map(this.message(typeName).fields.map((field) => [field.number, field]));
      this.fieldsByNumber.set(typeName, index);
    }
    return index;
  }

  private readMessage(typeName: string, data: Uint8Array): ProtoObject {
    const result: ProtoObject = {};
    const fields = this.fieldIndex(typeName);
    for (const field of fields.values()) {
      if (field.mapValue) result[field.name] = {};
      else if (field.repeated) result[field.name] = [];
      else if (!field.explicitPresence) result[field.name] = this.defaultValue(field.type);
    }
    const reader = new Reader(data);
    while (!reader.done()) {
      const tag = reader.varint();
      const number = Math.floor(tag / 8);
      const wireType = tag & 7;
      const field = fields.get(number);
      if (!field) {
        reader.skip(wireType);
        continue;
      }
      if (field.mapValue) {
        const entry = reader.lengthDelimited();
        const entryReader = new Reader(entry);
        let key = "";
        let entryValue: unknown = this.defaultValue(field.mapValue);
        while (!entryReader.done()) {
          const entryTag = entryReader.varint();
          const entryNumber = Math.floor(entryTag / 8);
          if (entryNumber === 1) key = textDecoder.decode(entryReader.lengthDelimited());
          else if (entryNumber === 2) entryValue = this.readValue(entryReader, field.mapValue, entryTag & 7);
          else entryReader.skip(entryTag & 7);
        }
        (result[field.name] as Record<string, unknown>)[key] = entryValue;
      } else if (field.repeated) {
        const list = result[field.name] as unknown[];
        if (
          wireType === WIRE_LENGTH_DELIMITED &&
          field.type.kind !== "message" &&
          !isLengthDelimitedScalar(field.type)
        ) {
          const packed = new Reader(reader.lengthDelimited());
          while (!packed.done()) list.push(this.readValue(packed, field.type, packedWireType(field.type)));
        } else list.push(this.readValue(reader, field.type, wireType));
      } else {
        result[field.name] = this.readValue(reader, field.type, wireType);
      }
    }
    return result;
  }

  private readValue(reader: Reader, type: FieldType, wireType: number): unknown {
    if (type.kind === "message") return this.readMessage(type.typeName, reader.lengthDelimited());
    if (type.kind === "enum") return this.enumName(type.typeName, reader.signedVarint());
    switch (type.scalar) {
      case "string":
        return textDecoder.decode(reader.lengthDelimited());
      case "bytes":
        return reader.lengthDelimited().slice();
      case "bool":
        return reader.varint() !== 0;
      case "double":
        return reader.double();
      case "int32":
      case "int64":
        return reader.signedVarint();
      default:
        if (wireType !== WIRE_VARINT) throw new Error("protobuf: unexpected wire type for integer");
        return reader.varint();
    }
  }

  private enumName(typeName: string, numeric: number): string | number {
    let names = this.enumNames.get(typeName);
    if (!names) {
      names = new Map(
        Object.entries(this.descriptor.enums[typeName] ?? {}).map(([name, value]) => [value, name]),
      );
      this.enumNames.set(typeName, names);
    }
    return names.get(numeric) ?? numeric;
  }

  private defaultValue(type: FieldType): unknown {
    if (type.kind === "message") return undefined;
    if (type.kind === "enum") return this.enumName(type.typeName, 0);
    switch (type.scalar) {
      case "string":
        return "";
      case "bytes":
        return new Uint8Array(0);
      case "bool":
        return false;
      default:
        return 0;
    }
  }
}

function isLengthDelimitedScalar(type: FieldType): boolean {
  return type.kind === "scalar" && (type.scalar === "string" || type.scalar === "bytes");
}

function packedWireType(type: FieldType): number {
  return type.kind === "scalar" && type.scalar === "double" ? WIRE_FIXED64 : WIRE_VARINT;
}

class Reader {
  private offset = 0;
  private readonly data: Uint8Array;

  constructor(data: Uint8Array) {
    this.data = data;
  }

  done(): boolean {
    return this.offset >= this.data.length;
  }

  /** An unsigned varint; exact up to 2^53, as every length, tag and count here is. */
  varint(): number {
    const start = this.offset;
    let result = 0;
    let scale = 1;
    // Seven bytes hold 49 bits, exact in a double; longer varints take the BigInt path.
    for (let i = 0; i < 7; i++) {
      const byte = this.data[this.offset++];
      if (byte === undefined) throw new Error("protobuf: truncated varint");
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) return result;
      scale *= 0x80;
    }
    this.offset = start;
    return Number(this.bigVarint());
  }

  /** A varint read as a two's complement int64 (int32, int64 and enum fields). */
  signedVarint(): number {
    const start = this.offset;
    const value = this.varint();
    if (this.offset - start <= 7) return value;
    this.offset = start;
    return Number(BigInt.asIntN(64, this.bigVarint()));
  }

  private bigVarint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = this.data[this.offset++];
      if (byte === undefined) throw new Error("protobuf: truncated varint");
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
      shift += 7n;
    }
  }

  lengthDelimited(): Uint8Array {
    const length = this.varint();
    const end = this.offset + length;
    if (end > this.data.length) throw new Error("protobuf: truncated field");
    const slice = this.data.subarray(this.offset, end);
    this.offset = end;
    return slice;
  }

  double(): number {
    const view = new DataView(this.data.buffer, this.data.byteOffset + this.offset, 8);
    this.offset += 8;
    return view.getFloat64(0, true);
  }

  skip(wireType: number) {
    if (wireType === WIRE_VARINT) this.varint();
    else if (wireType === WIRE_FIXED64) this.offset += 8;
    else if (wireType === WIRE_LENGTH_DELIMITED) this.lengthDelimited();
    else if (wireType === WIRE_FIXED32) this.offset += 4;
    else throw new Error(`protobuf: unsupported wire type ${wireType}`);
  }
}
