// What every process Terraform launches as the provider owes it, served in place or through
// the daemon: survive Ctrl-C long enough to answer StopProvider, and never outlive Terraform.

const PARENT_CHECK_INTERVAL_MS = 500;

/**
 * A terminal Ctrl-C reaches the whole process group; Terraform answers it by sending
 * StopProvider, which cancels calls in flight, and the provider must outlive it to reply.
 */
export function ignoreInterrupts(): void {
  process.on("SIGINT", () => {});
}

/** If Terraform dies we are re-parented: exit (a daemon's session ends with this process). */
export function exitWhenOrphaned(onOrphaned: () => void = () => process.exit(0)): void {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) onOrphaned();
  }, PARENT_CHECK_INTERVAL_MS).unref();
}
