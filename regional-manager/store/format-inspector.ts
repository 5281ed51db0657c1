// Decides from an image's leading bytes whether its content is what its declared format says,
// and whether it could make QEMU open any file but itself. A qcow2 header may name a backing
// file or an external data file, which QEMU opens on the host (an absolute path, or a relative
// one resolved next to the stored image): an image that does is refused, as is any format the
// declared one is not (CVE-2024-32498 is this hole in OpenStack). Pure: the caller reads the
// bytes (the verified image, at commit and again before a boot).
import type { FileHandle } from "node:fs/promises";
import type { ImageFormat } from "../../common/image-format/formats.ts";

export type { ImageFormat } from "../../common/image-format/formats.ts";

/**
 * How many leading bytes an inspection needs (fewer when the image is smaller): the ISO 9660
 * primary volume descriptor starts at 32 KiB; a qcow2 header and its extensions sit in its
 * first cluster, which they are refused for running past.
 */
export const INSPECT_BYTES = 64 * 1024;

export type Inspection =
  | { ok: true /** Bytes the guest sees: a qcow2 header's size, else the file's. */; virtualSize: number }
  | { ok: false; reason: string };

const QCOW_MAGIC = 0x514649fb; // "QFI\xfb"
const QCOW2_V2_HEADER_BYTES = 72;
const QCOW2_V3_MIN_HEADER_BYTES = 104;

// Incompatible feature bits (qcow2 spec, "incompatible_features").
const INCOMPATIBLE_DIRTY = 1n << 0n;
const INCOMPATIBLE_CORRUPT = 1n << 1n;
const INCOMPATIBLE_DATA_FILE = 1n << 2n;
const INCOMPATIBLE_COMPRESSION_TYPE = 1n << 3n;
const INCOMPATIBLE_EXTENDED_L2 = 1n << 4n;
/** Bits a reader can honour without opening anything else; any other is refused. */
const KNOWN_INCOMPATIBLE = INCOMPATIBLE_DIRTY | INCOMPATIBLE_COMPRESSION_TYPE | INCOMPATIBLE_EXTENDED_L2;

// Header extension types (qcow2 spec, "Header extensions").
const EXTENSION_END = 0x00000000;
const EXTENSION_DATA_FILE = 0x44415441;
const EXTENSION_FULL_DISK_ENCRYPTION = 0x0537be77;

const ISO_SIGNATURE_OFFSET = 32769; // "CD001" in the descriptor of sector 16 (2048-byte sectors)

/** Formats QEMU recognizes by their first bytes; none of them is raw, several name other files. */
const LEADING_SIGNATURES: ReadonlyArray<{ name: string; offset: number; bytes: Buffer }> = [
  { name: "qcow", offset: 0, bytes: Buffer.from("QFI\xfb", "latin1") },
  { name: "qed", offset: 0, bytes: Buffer.from("QED\0", "latin1") },
  { name: "vmdk", offset: 0, bytes: Buffer.from("KDMV", "latin1") },
  { name: "vmdk (ESX COWD)", offset: 0, bytes: Buffer.from("COWD", "latin1") },
  { name: "vhd", offset: 0, bytes: Buffer.from("conectix", "latin1") },
  { name: "vhdx", offset: 0, bytes: Buffer.from("vhdxfile", "latin1") },
  { name: "luks", offset: 0, bytes: Buffer.from("LUKS\xba\xbe", "latin1") },
  { name: "vdi", offset: 0x40, bytes: Buffer.from([0x7f, 0x10, 0xda, 0xbe]) },
  { name: "parallels", offset: 0, bytes: Buffer.from("WithoutFreeSpace", "latin1") },
  { name: "parallels", offset: 0, bytes: Buffer.from("WithouFreSpacExt", "latin1") },
  { name: "bochs", offset: 0, bytes: Buffer.from("Bochs Virtual HD Image", "latin1") },
  { name: "cloop", offset: 0, bytes: Buffer.from("#!/bin/sh\n#V2.0 Format\n", "latin1") },
];

/** A VMDK descriptor is text whose extent lines name the files holding the data. */
const VMDK_DESCRIPTOR_BYTES = 4096;
const VMDK_DESCRIPTOR = /# Disk DescriptorFile|^[ \t]*createType[ \t]*=/m;

/** The disk format the bytes are recognized as (other than raw), or undefined. */
export function recognizeFormat(head: Uint8Array): string | undefined {
  const bytes = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  for (const { name, offset, bytes: signature } of LEADING_SIGNATURES) {
    if (
      bytes.length >= offset + signature.length &&
      bytes.subarray(offset, offset + signature.length).equals(signature)
    ) {
      return name === "qcow" && bytes.length >= 8 && bytes.readUInt32BE(4) >= 2 ? "qcow2" : name;
    }
  }
  const text = bytes.subarray(0, VMDK_DESCRIPTOR_BYTES);
  const end = text.indexOf(0);
  if (VMDK_DESCRIPTOR.test(text.subarray(0, end === -1 ? text.length : end).toString("latin1"))) {
    return "vmdk descriptor";
  }
  return undefined;
}

/**
 * Whether `head` (the first min(fileSize, INSPECT_BYTES) bytes of an image) is an image of
 * `format` that QEMU can open without opening any other file.
 */
export function inspectImage(format: ImageFormat, head: Uint8Array, fileSize: number): Inspection {
  if (head.length < Math.min(fileSize, INSPECT_BYTES)) {
    return refuse(
      `only ${head.length} of the image's first ${Math.min(fileSize, INSPECT_BYTES)} bytes were inspected`,
    );
  }
  switch (format) {
    case "qcow2":
      return inspectQcow2(Buffer.from(head.buffer, head.byteOffset, head.byteLength));
    case "raw":
      return inspectRaw(head, fileSize);
    case "iso":
      return inspectIso(head, fileSize);
  }
}

/** `inspectImage` over an open image file of `size` bytes (the I/O edge of this module). */
export async function inspectImageFile(
  file: FileHandle,
  format: ImageFormat,
  size: number,
): Promise<Inspection> {
  const head = Buffer.alloc(Math.min(size, INSPECT_BYTES));
  const { bytesRead } = await file.read(head, 0, head.length, 0);
  return inspectImage(format, head.subarray(0, bytesRead), size);
}

function refuse(reason: string): Inspection {
  return { ok: false, reason };
}

function inspectRaw(head: Uint8Array, fileSize: number): Inspection {
  const found = recognizeFormat(head);
  if (found) return refuse(`declared raw, but the content is a ${found} image`);
  return { ok: true, virtualSize: fileSize };
}

function inspectIso(head: Uint8Array, fileSize: number): Inspection {
  const bytes = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const found = recognizeFormat(head);
  if (found) return refuse(`declared iso, but the content is a ${found} image`);
  if (bytes.subarray(ISO_SIGNATURE_OFFSET, ISO_SIGNATURE_OFFSET + 5).toString("latin1") !== "CD001") {
    return refuse(
      `declared iso, but the content has no ISO 9660 signature (CD001 at byte ${ISO_SIGNATURE_OFFSET})`,
    );
  }
  return { ok: true, virtualSize: fileSize };
}

function inspectQcow2(bytes: Buffer): Inspection {
  if (bytes.length < 8 || bytes.readUInt32BE(0) !== QCOW_MAGIC) {
    const found = recognizeFormat(bytes);
    return refuse(
      `declared qcow2, but the content is ${found ? `a ${found} image` : "not a qcow2 image (no QFI\\xfb magic)"}`,
    );
  }
  const version = bytes.readUInt32BE(4);
  if (version !== 2 && version !== 3) return refuse(`qcow2 version ${version} is not supported (2 or 3)`);
  const headerLength = version === 2 ? QCOW2_V2_HEADER_BYTES : v3HeaderLength(bytes);
  if (headerLength === undefined || bytes.length < headerLength) {
    return refuse("the qcow2 header is truncated");
  }
  const backingOffset = bytes.readBigUInt64BE(8);
  const backingSize = bytes.readUInt32BE(16);
  if (backingOffset !== 0n || backingSize !== 0)
    return refuse(backingReason(bytes, backingOffset, backingSize));
  const clusterBits = bytes.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21)
    return refuse(`qcow2 cluster_bits ${clusterBits} is out of range (9 to 21)`);
  const size = bytes.readBigUInt64BE(24);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) return refuse(`qcow2 virtual size ${size} is too large`);
  const cryptMethod = bytes.readUInt32BE(32);
  if (cryptMethod !== 0) return refuse(`qcow2 image is encrypted (crypt_method ${cryptMethod})`);

  if (version === 3) {
    const incompatible = bytes.readBigUInt64BE(72);
    if (incompatible & INCOMPATIBLE_DATA_FILE) return refuse(dataFileReason(bytes, headerLength));
    if (incompatible & INCOMPATIBLE_CORRUPT) return refuse("qcow2 image is marked corrupt");
    const unknown = incompatible & ~KNOWN_INCOMPATIBLE;
    if (unknown !== 0n)
      return refuse(`qcow2 image has unknown incompatible feature bits 0x${unknown.toString(16)}`);
    // The compression type byte follows a 104-byte header; zlib (0) is implied when absent.
    const compression =
      headerLength > QCOW2_V3_MIN_HEADER_BYTES ? (bytes[QCOW2_V3_MIN_HEADER_BYTES] as number) : 0;
    if (compression > 1) return refuse(`qcow2 compression type ${compression} is unknown`);
    if (compression !== 0 && !(incompatible & INCOMPATIBLE_COMPRESSION_TYPE)) {
      return refuse("qcow2 compression type is set without its incompatible feature bit");
    }
  }
  const extensions = readExtensions(bytes, headerLength);
  if (typeof extensions === "string") return refuse(extensions);
  if (extensions.has(EXTENSION_DATA_FILE)) return refuse(dataFileReason(bytes, headerLength));
  if (extensions.has(EXTENSION_FULL_DISK_ENCRYPTION))
    return refuse("qcow2 image has a full disk encryption header");
  return { ok: true, virtualSize: Number(size) };
}

function v3HeaderLength(bytes: Buffer): number | undefined {
  if (bytes.length < QCOW2_V3_MIN_HEADER_BYTES) return undefined;
  const length = bytes.readUInt32BE(100);
  // The spec requires 104 or more, a multiple of 8 once extended.
  if (length < QCOW2_V3_MIN_HEADER_BYTES || (length > QCOW2_V3_MIN_HEADER_BYTES && length % 8 !== 0)) {
    return undefined;
  }
  return length;
}

/** The header extensions' types and data, or why they cannot be read. */
function readExtensions(bytes: Buffer, start: number): Map<number, Buffer> | string {
  const found = new Map<number, Buffer>();
  let at = start;
  for (;;) {
    if (at + 8 > bytes.length) return `qcow2 header extensions run past the first ${bytes.length} bytes`;
    const type = bytes.readUInt32BE(at);
    const length = bytes.readUInt32BE(at + 4);
    if (type === EXTENSION_END) return found;
    const end = at + 8 + length;
    if (end > bytes.length)
      return `qcow2 header extension 0x${type.toString(16)} runs past the first ${bytes.length} bytes`;
    found.set(type, bytes.subarray(at + 8, end));
    at = end + ((8 - (length % 8)) % 8);
  }
}

function backingReason(bytes: Buffer, offset: bigint, size: number): string {
  const end = offset + BigInt(size);
  if (size > 0 && end <= BigInt(bytes.length)) {
    const name = bytes.subarray(Number(offset), Number(end)).toString("utf8");
    return `qcow2 image names a backing file ${quote(name)}`;
  }
  return `qcow2 image names a backing file (offset ${offset}, ${size} bytes)`;
}

function dataFileReason(bytes: Buffer, headerLength: number): string {
  const extensions = readExtensions(bytes, headerLength);
  const name = typeof extensions === "string" ? undefined : extensions.get(EXTENSION_DATA_FILE);
  return name?.length
    ? `qcow2 image names an external data file ${quote(name.toString("utf8"))}`
    : "qcow2 image uses an external data file";
}

/** A name from the image, shown whole but with control characters escaped. */
function quote(name: string): string {
  const shown = name.length > 256 ? `${name.slice(0, 256)}…` : name;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping them is the point
  return `'${shown.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}'`;
}
