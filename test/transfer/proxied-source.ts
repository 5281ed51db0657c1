// A source manager holding one uploaded image version, reached through a proxy a test can slow
// down or cut: the setup the transfer tests that pull from a peer share.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { uploadImage } from "../../client/upload.ts";
import {
  createTestKeys,
  type ManagerProcess,
  startManager,
  stopAllManagers,
  type TestKeys,
  temporaryDir,
} from "../support/transfer.ts";
import { startProxy, type TransferProxy } from "./proxy.ts";

export interface ProxiedSource {
  dir: Awaited<ReturnType<typeof temporaryDir>>;
  keys: TestKeys;
  /** Datacenter dc-a's manager, holding `imageId` version 1. */
  source: ManagerProcess;
  proxy: TransferProxy;
  close(): Promise<void>;
}

/** Uploads `image` as version 1 of `imageId` to a fresh dc-a manager and puts a proxy before it. */
export async function startProxiedSource(
  name: string,
  imageId: string,
  image: Buffer,
): Promise<ProxiedSource> {
  const dir = await temporaryDir(name);
  const keys = await createTestKeys(dir.path);
  const source = await startManager({
    dataDir: join(dir.path, "source"),
    datacenter: "dc-a",
    publicKeyFile: keys.publicKeyFile,
  });
  await writeFile(join(dir.path, "v1.raw"), image);
  await uploadImage({
    path: join(dir.path, "v1.raw"),
    managerUrl: source.url,
    token: await keys.token(imageId, 1, "dc-a", "upload"),
    imageId,
    version: 1,
  });
  const proxy = await startProxy(source.url);
  return {
    dir,
    keys,
    source,
    proxy,
    async close() {
      await stopAllManagers();
      await proxy.close();
      await dir.remove();
    },
  };
}
