// The durable replacement of small files (version records, instance records).
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { replaceFileDurably, replaceFileDurablySync } from "../../common/files.ts";
import { readInstanceRecord, writeInstanceRecord } from "../../regional-manager/compute/instance-record.ts";
import { temporaryDir } from "../support/transfer.ts";

describe("durable file replacement", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  beforeEach(async () => {
    dir = await temporaryDir("files");
  });
  afterEach(async () => {
    await dir.remove();
  });

  it("replaces the content, asynchronously or not, and leaves no temporary file", async () => {
    const path = join(dir.path, "record.json");
    await writeFile(path, "old");
    await replaceFileDurably(path, "new");
    expect(await readFile(path, "utf8")).toBe("new");
    replaceFileDurablySync(path, Buffer.from("newer"));
    expect(await readFile(path, "utf8")).toBe("newer");
    expect(await readdir(dir.path)).toEqual(["record.json"]);
  });

  it("fails with the cause and leaves nothing behind when the file cannot be written", async () => {
    const path = join(dir.path, "missing-dir", "record.json");
    await expect(replaceFileDurably(path, "x")).rejects.toMatchObject({ code: "ENOENT" });
    expect(() => replaceFileDurablySync(path, "x")).toThrow(/ENOENT/);
    expect(await readdir(dir.path)).toEqual([]);
  });

  it("writes instance records through it", async () => {
    const record = { spec: {}, state: "running", metadataPort: 1, guestAttributes: { a: "b" } } as never;
    writeInstanceRecord(dir.path, record);
    expect(readInstanceRecord(dir.path)).toEqual(record);
    expect(await readdir(dir.path)).toEqual(["instance.json"]);
  });
});
