/*
 * Imported first by the entry points that serve images (globalvm, the standalone transfer
 * service). Node does every file read and write on libuv's thread pool, 4 threads unless
 * UV_THREADPOOL_SIZE says otherwise, read once when the pool starts (at its first use). A
 * manager receiving an update queues a base copy's megabyte writes, the scattered reads of
 * the changed chunks and the hasher's reads on that pool; with 4 threads the small reads
 * waited behind the large writes, and a 1% delta of 1 GiB spent 0.8 s longer fetching its
 * patches. More threads let the disk see the requests together. A value the user set wins.
 */
export const THREAD_POOL_SIZE = 16;

process.env.UV_THREADPOOL_SIZE ??= String(THREAD_POOL_SIZE);
