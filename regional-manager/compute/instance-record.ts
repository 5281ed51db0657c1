// What a driver remembers of an instance on disk, so that a restarted manager can take it over.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { replaceFileDurablySync } from "../store/files.ts";
import type { InstanceSpec, InstanceState } from "./types.ts";

export interface InstanceRecord {
  spec: InstanceSpec;
  state: InstanceState;
  reason?: string;
  consoleTail?: string;
  /** The loopback port of the instance's metadata listener; a running guest relays to it. */
  metadataPort: number;
  guestAttributes: Record<string, string>;
  pid?: number;
  accelerator?: string;
}

export const RECORD_FILE = "instance.json";

export function readInstanceRecord(instanceDir: string): InstanceRecord {
  return JSON.parse(readFileSync(join(instanceDir, RECORD_FILE), "utf8")) as InstanceRecord;
}

/**
 * Replaced durably (see replaceFileDurablySync): a crash never leaves half a record, and a
 * manager restarted after a power loss finds the state it last reported.
 */
export function writeInstanceRecord(instanceDir: string, record: InstanceRecord): void {
  replaceFileDurablySync(join(instanceDir, RECORD_FILE), `${JSON.stringify(record, null, 2)}\n`);
}
