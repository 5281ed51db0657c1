import { execFileSync } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  INSPECT_BYTES,
  inspectImage,
  recognizeFormat,
} from "../../regional-manager/store/format-inspector.ts";
import type { ImageFormat } from "../../regional-manager/store/image-store.ts";
import { temporaryDir } from "../support/transfer.ts";
import { makeHostileImages } from "./hostile-images.ts";

/** Images made by the real qemu-img, as an attacker would make them. */
describe("format inspector", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  beforeAll(async () => {
    dir = await temporaryDir("format-inspector");
  });
  afterAll(async () => {
    await dir.remove();
  });

  function qemuImg(...args: string[]): void {
    execFileSync("qemu-img", args, { cwd: dir.path, stdio: ["ignore", "ignore", "pipe"] });
  }
  function inspect(name: string, format: ImageFormat) {
    const path = join(dir.path, name);
    return inspectImage(format, readFileSync(path).subarray(0, INSPECT_BYTES), statSync(path).size);
  }

  it("accepts a plain qcow2 (v3 and v2) and reports its virtual size", () => {
    qemuImg("create", "-q", "-f", "qcow2", "plain.qcow2", "3M");
    qemuImg("create", "-q", "-f", "qcow2", "-o", "compat=0.10", "v2.qcow2", "5M");
    qemuImg("create", "-q", "-f", "qcow2", "-o", "compression_type=zstd,extended_l2=on", "zstd.qcow2", "4M");
    expect(inspect("plain.qcow2", "qcow2")).toEqual({ ok: true, virtualSize: 3 << 20 });
    expect(inspect("v2.qcow2", "qcow2")).toEqual({ ok: true, virtualSize: 5 << 20 });
    expect(inspect("zstd.qcow2", "qcow2")).toEqual({ ok: true, virtualSize: 4 << 20 });
  });

  it("refuses each hostile image of issue #12 with a reason naming what it found", async () => {
    for (const image of await makeHostileImages(dir.path)) {
      const path = image.path.slice(dir.path.length + 1);
      expect(inspect(path, image.format), image.name).toEqual({ ok: false, reason: image.reason });
    }
    // The data-file extension alone, without its incompatible bit, is refused as well.
    const bytes = readFileSync(join(dir.path, "data-file.qcow2"));
    bytes.writeBigUInt64BE(bytes.readBigUInt64BE(72) & ~4n, 72);
    writeFileSync(join(dir.path, "data-file-extension.qcow2"), bytes);
    expect(inspect("data-file-extension.qcow2", "qcow2")).toEqual({
      ok: false,
      reason: "qcow2 image names an external data file '/etc/hostname'",
    });
  });

  it("refuses unknown incompatible feature bits, a corrupt mark, encryption and other versions", () => {
    const plain = readFileSync(join(dir.path, "plain.qcow2"));
    const patched = (name: string, patch: (bytes: Buffer) => void) => {
      const bytes = Buffer.from(plain);
      patch(bytes);
      writeFileSync(join(dir.path, name), bytes);
      return inspect(name, "qcow2");
    };
    expect(patched("unknown-bit.qcow2", (b) => b.writeBigUInt64BE(1n << 40n, 72))).toEqual({
      ok: false,
      reason: "qcow2 image has unknown incompatible feature bits 0x10000000000",
    });
    expect(patched("corrupt.qcow2", (b) => b.writeBigUInt64BE(2n, 72))).toMatchObject({
      reason: "qcow2 image is marked corrupt",
    });
    expect(patched("encrypted.qcow2", (b) => b.writeUInt32BE(2, 32))).toMatchObject({
      reason: "qcow2 image is encrypted (crypt_method 2)",
    });
    expect(patched("v4.qcow2", (b) => b.writeUInt32BE(4, 4))).toMatchObject({
      reason: "qcow2 version 4 is not supported (2 or 3)",
    });
    expect(patched("backing-offset-only.qcow2", (b) => b.writeBigUInt64BE(1n << 30n, 8))).toMatchObject({
      reason: "qcow2 image names a backing file (offset 1073741824, 0 bytes)",
    });
    // The dirty bit only asks for a refcount repair: accepted.
    expect(patched("dirty.qcow2", (b) => b.writeBigUInt64BE(1n, 72))).toMatchObject({ ok: true });
  });

  it("accepts raw content as raw, and refuses a qcow2 declared iso", () => {
    writeFileSync(join(dir.path, "zeros.raw"), Buffer.alloc(1 << 20, 7));
    expect(inspect("zeros.raw", "raw")).toEqual({ ok: true, virtualSize: 1 << 20 });
    expect(inspect("plain.qcow2", "iso")).toMatchObject({
      reason: "declared iso, but the content is a qcow2 image",
    });
  });

  it("refuses, as raw, every format that is not raw or can name another file", () => {
    const made: Array<[string, string[], string]> = [
      ["a.vmdk", ["-f", "vmdk"], "vmdk"],
      ["flat.vmdk", ["-f", "vmdk", "-o", "subformat=monolithicFlat"], "vmdk descriptor"],
      ["a.vhd", ["-f", "vpc"], "vhd"],
      ["a.vhdx", ["-f", "vhdx"], "vhdx"],
      ["a.qed", ["-f", "qed"], "qed"],
      ["a.vdi", ["-f", "vdi"], "vdi"],
      ["a.parallels", ["-f", "parallels"], "parallels"],
      // qemu-img times its key derivation over iter-time; at 10 ms on a busy machine it failed
      // with "Unable to get accurate CPU usage" (once, in a full CI run).
      [
        "a.luks",
        ["-f", "luks", "--object", "secret,id=s,data=x", "-o", "key-secret=s,iter-time=200"],
        "luks",
      ],
    ];
    for (const [name, options, found] of made) {
      // LUKS times its key derivation by the thread's CPU time, which a starved machine can
      // measure as none ("Unable to get accurate CPU usage", twice in full CI runs): try again.
      for (let attempt = 1; ; attempt++) {
        try {
          qemuImg("create", "-q", ...options, name, "1M");
          break;
        } catch (error) {
          if (attempt === 5 || !String(error).includes("Unable to get accurate CPU usage")) throw error;
        }
      }
      expect(inspect(name, "raw"), name).toEqual({
        ok: false,
        reason: `declared raw, but the content is a ${found} image`,
      });
    }
    writeFileSync(join(dir.path, "qcow1"), Buffer.from("QFI\xfb\0\0\0\x01", "latin1"));
    expect(recognizeFormat(readFileSync(join(dir.path, "qcow1")))).toBe("qcow");
  });

  it("requires the ISO 9660 signature of an iso", () => {
    const iso = Buffer.alloc(64 * 1024);
    iso.write("\x01CD001\x01", 32768, "latin1");
    writeFileSync(join(dir.path, "a.iso"), iso);
    expect(inspect("a.iso", "iso")).toEqual({ ok: true, virtualSize: iso.length });
    expect(inspect("zeros.raw", "iso")).toEqual({
      ok: false,
      reason: "declared iso, but the content has no ISO 9660 signature (CD001 at byte 32769)",
    });
  });

  it("refuses to judge from fewer bytes than it needs", () => {
    expect(inspectImage("raw", Buffer.alloc(10), 1 << 20)).toEqual({
      ok: false,
      reason: `only 10 of the image's first ${INSPECT_BYTES} bytes were inspected`,
    });
  });
});
