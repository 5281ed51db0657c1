// Issue #12, finding 1: an image whose content is not its declared format, or that names
// another host file, never becomes available, however it arrives.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadImage } from "../../client/upload.ts";
import { sha256Hex } from "../../common/image-format/digest.ts";
import { type HostileImage, makeHostileImages, placeInStore } from "../store/hostile-images.ts";
import {
  createTestKeys,
  type ManagerProcess,
  startManager,
  stopAllManagers,
  type TestKeys,
  temporaryDir,
} from "../support/transfer.ts";

describe("hostile images", () => {
  let dir: Awaited<ReturnType<typeof temporaryDir>>;
  let keys: TestKeys;
  let manager: ManagerProcess;
  let hostile: HostileImage[];

  beforeAll(async () => {
    dir = await temporaryDir("hostile");
    keys = await createTestKeys(dir.path);
    hostile = await makeHostileImages(dir.path);
    manager = await startManager({
      dataDir: join(dir.path, "a"),
      datacenter: "dc-a",
      publicKeyFile: keys.publicKeyFile,
    });
  });
  afterAll(async () => {
    await stopAllManagers();
    await dir.remove();
  });

  /** Whether the manager serves the version to peers: only an available version is. */
  async function manifestStatus(imageId: string): Promise<number> {
    const answer = await fetch(`${manager.url}/v1/transfer/${imageId}/versions/1/manifest`, {
      headers: { authorization: `Bearer ${await keys.token(imageId, 1, "dc-a", "read")}` },
    });
    return answer.status;
  }

  it("refuses each at the commit of a chunked upload, with 422 naming the reason", async () => {
    for (const [i, image] of hostile.entries()) {
      const imageId = `img-chunked-${i}`;
      const upload = uploadImage({
        path: image.path,
        managerUrl: manager.url,
        token: await keys.token(imageId, 1, "dc-a", "upload"),
        imageId,
        version: 1,
        format: image.format,
      });
      await expect(upload, image.name).rejects.toMatchObject({
        status: 422,
        code: "image_format_refused",
        message: `image_format_refused (422): image ${imageId} version 1 is refused: ${image.reason}`,
      });
      expect(await manifestStatus(imageId), image.name).toBe(404);
    }
  });

  it("refuses each sent whole, with 422 naming the reason", async () => {
    for (const [i, image] of hostile.entries()) {
      const imageId = `img-whole-${i}`;
      const body = await readFile(image.path);
      const answer = await fetch(
        `${manager.url}/v1/uploads/${imageId}/versions/1/image?format=${image.format}`,
        {
          method: "PUT",
          headers: {
            authorization: `Bearer ${await keys.token(imageId, 1, "dc-a", "upload")}`,
            "x-image-digest": `sha256:${sha256Hex(body)}`,
          },
          body,
        },
      );
      expect(answer.status, image.name).toBe(422);
      expect(await answer.json()).toMatchObject({
        code: "image_format_refused",
        detail: `image ${imageId} version 1 is refused: ${image.reason}`,
      });
      expect(await manifestStatus(imageId), image.name).toBe(404);
    }
  });

  it("forgets a refused version: a corrected upload of the same version succeeds", async () => {
    const [absolute] = hostile as [HostileImage];
    const plain = hostile.find((image) => image.name === "qcow2 uploaded as raw") as HostileImage;
    const token = await keys.token("img-retry", 1, "dc-a", "upload");
    const base = {
      managerUrl: manager.url,
      token,
      imageId: "img-retry",
      version: 1,
      format: "qcow2" as const,
    };
    await expect(uploadImage({ ...base, path: absolute.path })).rejects.toMatchObject({ status: 422 });
    const fixed = await uploadImage({ ...base, path: plain.path });
    expect(fixed.record).toMatchObject({ state: "available", format: "qcow2" });
  });

  it("refuses each pulled from a peer that holds it (defence in depth)", async () => {
    // The source accepted them before this check existed: they are put in its store by hand.
    const sourceDir = join(dir.path, "source");
    const placed = [];
    for (const [i, image] of hostile.entries()) {
      placed.push(await placeInStore(sourceDir, `img-pull-${i}`, 1, image.path, image.format));
    }
    const source = await startManager({
      dataDir: sourceDir,
      datacenter: "dc-s",
      publicKeyFile: keys.publicKeyFile,
    });
    for (const [i, image] of hostile.entries()) {
      const imageId = `img-pull-${i}`;
      const record = placed[i] as (typeof placed)[number];
      const answer = await fetch(`${manager.url}/_test/pull`, {
        method: "POST",
        body: JSON.stringify({
          imageId,
          version: 1,
          expectedDigest: record.digest,
          expectedSize: record.size,
          sources: [{ url: source.url, token: await keys.token(imageId, 1, "dc-s", "read") }],
        }),
      });
      expect(answer.status, image.name).toBe(422);
      expect(await answer.json()).toMatchObject({
        code: "image_format_refused",
        detail: `image ${imageId} version 1 is refused: ${image.reason}`,
      });
      expect(await manifestStatus(imageId), image.name).toBe(404);
    }
  });
});
