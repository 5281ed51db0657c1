// The few ASN.1 DER encodings an X.509 certificate needs.

function encodeLength(length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let remaining = length; remaining > 0; remaining >>= 8) bytes.unshift(remaining & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function tlv(tag: number, content: Uint8Array): Uint8Array {
  return concatBytes([Uint8Array.of(tag), encodeLength(content.length), content]);
}

export const sequence = (...items: Uint8Array[]) => tlv(0x30, concatBytes(items));
export const set = (...items: Uint8Array[]) => tlv(0x31, concatBytes(items));
export const explicit = (tagNumber: number, content: Uint8Array) => tlv(0xa0 | tagNumber, content);
export const implicitPrimitive = (tagNumber: number, content: Uint8Array) => tlv(0x80 | tagNumber, content);
export const booleanTrue = () => tlv(0x01, Uint8Array.of(0xff));
export const octetString = (content: Uint8Array) => tlv(0x04, content);
export const utf8String = (text: string) => tlv(0x0c, new TextEncoder().encode(text));
/** A BIT STRING whose content is whole bytes (signatures, keys). */
export const bitString = (content: Uint8Array, unusedBits = 0) =>
  tlv(0x03, concatBytes([Uint8Array.of(unusedBits), content]));

/** A non-negative INTEGER from big-endian bytes, minimal as DER demands. */
export function unsignedInteger(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  const needsPad = (trimmed[0] ?? 0) & 0x80;
  return tlv(0x02, needsPad ? concatBytes([Uint8Array.of(0), trimmed]) : trimmed);
}

export const smallInteger = (value: number) => unsignedInteger(Uint8Array.of(value));

export function objectIdentifier(dotted: string): Uint8Array {
  const [first = 0, second = 0, ...rest] = dotted.split(".").map(Number);
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let remaining = Math.floor(arc / 128); remaining > 0; remaining = Math.floor(remaining / 128)) {
      chunk.unshift((remaining & 0x7f) | 0x80);
    }
    bytes.push(...chunk);
  }
  return tlv(0x06, Uint8Array.from(bytes));
}

/** UTCTime (YYMMDDHHMMSSZ) before 2050, GeneralizedTime after, as RFC 5280 requires. */
export function time(date: Date): Uint8Array {
  const iso = date.toISOString();
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "");
  if (date.getUTCFullYear() < 2050) return tlv(0x17, new TextEncoder().encode(`${digits.slice(2)}Z`));
  return tlv(0x18, new TextEncoder().encode(`${digits}Z`));
}
