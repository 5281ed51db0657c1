import { setFlagsFromString } from "node:v8";

/*
 * Imported first by the entry points that serve images (globalvm, the standalone transfer
 * service): how their process is set up to move image bytes.
 */

/*
 * Node does every file read and write on libuv's thread pool, 4 threads unless
 * UV_THREADPOOL_SIZE says otherwise, read once when the pool starts (at its first use). A
 * manager receiving an update queues a base copy's megabyte writes, the scattered reads of
 * the changed chunks and the hasher's reads on that pool; with 4 threads the small reads
 * waited behind the large writes, and a 1% delta of 1 GiB spent 0.8 s longer fetching its
 * patches. More threads let the disk see the requests together. A value the user set wins.
 */
export const THREAD_POOL_SIZE = 16;

process.env.UV_THREADPOOL_SIZE ??= String(THREAD_POOL_SIZE);

/*
 * Each piece of a request body Node hands over is a fresh buffer outside V8's heap: 16,000 of
 * 64 KiB per GiB uploaded. The V8 of Node 24 starts a full collection each time such memory
 * grows past a limit of its own, whatever the heap holds. Measured here: a bare Node server
 * receiving 1 GiB made 17 full collections under Node 24 (1 under Node 20), and a whole-image
 * upload to a manager 37, each marking the whole heap again. Counted in the heap's global
 * limit instead (a V8 flag, off by default in this version), the bare server made 6-7 and
 * the upload 18-21. It takes effect at once: V8 reads it when it computes its limits.
 */
setFlagsFromString("--external-memory-accounted-in-global-limit");
