import type { VersionRecord } from "../store/image-store.ts";

/** Pulls one image version into the store: what VersionPulls runs when a version is missing. */
export type PullVersion = (imageId: string, version: number, signal: AbortSignal) => Promise<VersionRecord>;

/**
 * The manager's pulls of image versions: one per version at a time, shared by the replica
 * requests of the control plane and the instances waiting for their image; each can be
 * aborted on its own (deleting an image stops a pull of it midway), and all at close.
 */
export class VersionPulls {
  readonly #pull: PullVersion;
  readonly #held: (imageId: string, version: number) => VersionRecord | undefined;
  readonly #running = new Map<string, { done: Promise<VersionRecord>; abort: AbortController }>();
  readonly #closed = new AbortController();

  constructor(options: {
    pull: PullVersion;
    /** The version as the store holds it, if it does. */
    held: (imageId: string, version: number) => VersionRecord | undefined;
  }) {
    this.#pull = options.pull;
    this.#held = options.held;
  }

  /**
   * The version once it is available here: at once when held, else when its pull ends. `pull`
   * replaces the constructor's for this version's pull, if this call starts one.
   */
  ensure(imageId: string, version: number, pull: PullVersion = this.#pull): Promise<VersionRecord> {
    const held = this.#held(imageId, version);
    if (held?.state === "available") return Promise.resolve(held);
    const key = keyOf(imageId, version);
    const running = this.#running.get(key);
    if (running) return running.done;
    const abort = new AbortController();
    const done = pull(imageId, version, AbortSignal.any([this.#closed.signal, abort.signal])).finally(() =>
      this.#running.delete(key),
    );
    this.#running.set(key, { done, abort });
    return done;
  }

  isPulling(imageId: string, version: number): boolean {
    return this.#running.has(keyOf(imageId, version));
  }

  /** Stops the version's pull, if one runs, and waits until it has let go of the store. */
  async abort(imageId: string, version: number, reason: Error): Promise<void> {
    const running = this.#running.get(keyOf(imageId, version));
    if (!running) return;
    running.abort.abort(reason);
    await running.done.catch(() => {});
  }

  /** Stops every pull (the manager is closing). */
  close(): void {
    this.#closed.abort();
  }
}

function keyOf(imageId: string, version: number): string {
  return `${imageId}@${version}`;
}
