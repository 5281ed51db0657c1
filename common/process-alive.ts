// Whether a process still exists, for pid files (the embedded catalog's lock, the provider
// daemon's): signal 0 checks without signalling, and EPERM means it exists as another user.

export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
