// Images an attacker would push, made with the real qemu-img, and a way to put one in a
// manager's store by hand (as if an older manager had accepted it).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { chunkFile } from "../../common/image-format/chunk-file.ts";
import { encodeManifest } from "../../common/image-format/manifest.ts";
import {
  type ImageFormat,
  ImageStore,
  type VersionRecord,
} from "../../regional-manager/store/image-store.ts";

export interface HostileImage {
  name: string;
  path: string;
  format: ImageFormat;
  /** What the refusal must say. */
  reason: string;
}

function qemuImg(dir: string, ...args: string[]): void {
  execFileSync("qemu-img", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

/** A qcow2 at `path` whose header names `backing` (a host file, absolute or relative) as its backing file. */
export function makeBackedQcow2(path: string, backing: string, size: string | number = "1M"): void {
  execFileSync(
    "qemu-img",
    ["create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", path, String(size)],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
}

/** Each hostile image of issue #12, finding 1, in `dir`. */
export async function makeHostileImages(dir: string): Promise<HostileImage[]> {
  const at = (name: string) => join(dir, name);
  makeBackedQcow2(at("absolute.qcow2"), "/etc/passwd");
  makeBackedQcow2(at("relative.qcow2"), "../../../secrets.json");
  qemuImg(
    dir,
    "create",
    "-q",
    "-f",
    "qcow2",
    "-o",
    "data_file=/etc/hostname,data_file_raw=on",
    "data-file.qcow2",
    "1M",
  );
  qemuImg(dir, "create", "-q", "-f", "qcow2", "plain.qcow2", "1M");
  const unknownBit = await readFile(at("plain.qcow2"));
  unknownBit.writeBigUInt64BE(1n << 33n, 72);
  await writeFile(at("unknown-bit.qcow2"), unknownBit);
  await writeFile(at("disk.raw"), randomBytes(256 << 10));
  return [
    {
      name: "absolute backing file",
      path: at("absolute.qcow2"),
      format: "qcow2",
      reason: "qcow2 image names a backing file '/etc/passwd'",
    },
    {
      name: "relative backing file",
      path: at("relative.qcow2"),
      format: "qcow2",
      reason: "qcow2 image names a backing file '../../../secrets.json'",
    },
    {
      name: "external data file",
      path: at("data-file.qcow2"),
      format: "qcow2",
      reason: "qcow2 image names an external data file '/etc/hostname'",
    },
    {
      name: "unknown incompatible feature bit",
      path: at("unknown-bit.qcow2"),
      format: "qcow2",
      reason: "qcow2 image has unknown incompatible feature bits 0x200000000",
    },
    {
      name: "raw uploaded as qcow2",
      path: at("disk.raw"),
      format: "qcow2",
      reason: "declared qcow2, but the content is not a qcow2 image (no QFI\\xfb magic)",
    },
    {
      name: "qcow2 uploaded as raw",
      path: at("plain.qcow2"),
      format: "raw",
      reason: "declared raw, but the content is a qcow2 image",
    },
  ];
}

/**
 * Makes `path` an available version in the store at `dataDir` without the checks a commit
 * makes: the store is closed afterwards, a manager opening it finds the version available.
 */
export async function placeInStore(
  dataDir: string,
  imageId: string,
  version: number,
  path: string,
  format: ImageFormat,
): Promise<VersionRecord> {
  const manifest = await chunkFile(path);
  const store = await ImageStore.open(dataDir);
  const pending = await store.beginVersion(imageId, version, manifest, { format });
  const data = await readFile(path);
  let offset = 0;
  for (const chunk of manifest.chunks) {
    if (!chunk.zero) await store.chunks.put(chunk.digest, data.subarray(offset, offset + chunk.length));
    offset += chunk.length;
  }
  await store.chunks.flush();
  await store.close();
  const record: VersionRecord = {
    ...pending,
    state: "available",
    localId: `img-${randomBytes(8).toString("hex")}`,
  };
  await mkdir(join(dataDir, "images"), { recursive: true });
  await copyFile(path, join(dataDir, "images", `${record.localId}.img`));
  await writeFile(join(dataDir, "versions", imageId, `${version}.json`), JSON.stringify(record));
  await writeFile(join(dataDir, "versions", imageId, `${version}.manifest`), encodeManifest(manifest));
  return record;
}
