// What a driver remembers of an instance on disk, so that a restarted manager can take it over.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { replaceFileDurablySync } from "../../common/files.ts";
import type { InstanceSpec, InstanceState } from "./types.ts";

export interface InstanceRecord {
  spec: InstanceSpec;
  state: InstanceState;
  reason?: string;
  consoleTail?: string;
  /** The loopback port of the instance's metadata listener; a running guest relays to it. */
  metadataPort: number;
  /** The same for its DNS listener (absent in records of guests started before guests had DNS). */
  dnsPort?: number;
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

/** How long a guest attribute write may wait for its record to reach the disk. */
export const RECORD_WRITE_DELAY_MS = 1_000;

/**
 * Writes of a record that may wait: a guest writes its attributes in bursts, and each write
 * rewrote the whole record synchronously, blocking the manager. A burst is written once, within
 * `delayMs`; a manager crash meanwhile loses at most that much of the guest's writes (state
 * changes are still written at once, with the attributes known by then).
 */
export class DeferredRecordWrites {
  readonly #pending = new Map<string, { timer: NodeJS.Timeout; write: () => void }>();
  readonly #delayMs: number;

  constructor(delayMs = RECORD_WRITE_DELAY_MS) {
    this.#delayMs = delayMs;
  }

  /** Writes the record `current` returns then (not now) to `instanceDir`, once per burst. */
  schedule(key: string, instanceDir: string, current: () => InstanceRecord): void {
    if (this.#pending.has(key)) return;
    const write = () => {
      this.#pending.delete(key);
      try {
        writeInstanceRecord(instanceDir, current());
      } catch {
        // The instance was deleted meanwhile: nothing is left to remember.
      }
    };
    this.#pending.set(key, { timer: setTimeout(write, this.#delayMs), write });
  }

  /** Forgets a pending write (the instance is deleted). */
  cancel(key: string): void {
    clearTimeout(this.#pending.get(key)?.timer);
    this.#pending.delete(key);
  }

  /** Writes every pending record now (the manager detaches). */
  flush(): void {
    for (const { timer, write } of [...this.#pending.values()]) {
      clearTimeout(timer);
      write();
    }
  }
}
