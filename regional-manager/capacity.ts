// What a machine offers guests: configured, or its cores, memory and the data dir's free disk.
// The manager measures its datacenter's when it runs guests itself; a host agent its own host's.
import { statfs } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import type { Capacity } from "../schemas/common.ts";

export async function measureCapacity(
  dataDir: string,
  configured: Partial<Capacity> = {},
): Promise<Capacity> {
  const fs = await statfs(dataDir);
  return {
    vcpus: configured.vcpus ?? availableParallelism(),
    memory_mb: configured.memory_mb ?? Math.floor(totalmem() / 2 ** 20),
    disk_bytes: configured.disk_bytes ?? Number(fs.bavail) * Number(fs.bsize),
  };
}
