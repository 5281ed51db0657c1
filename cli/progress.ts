// Progress on stderr: a bar redrawn in place on a terminal, plain lines (at most one a second,
// plus every phase change) when stderr is a file or a pipe, so logs stay readable.

export interface ProgressLineWriter {
  update(line: string, phase: string): void;
  /** Prints the last line for good. */
  done(): void;
}

export function progressWriter(
  stream: NodeJS.WriteStream = process.stderr,
  now: () => number = Date.now,
): ProgressLineWriter {
  const tty = stream.isTTY === true;
  const interval = tty ? 100 : 1000;
  let lastAt = Number.NEGATIVE_INFINITY;
  let lastPhase = "";
  let pending: string | undefined;
  let lastLine: string | undefined;
  const write = (line: string) => {
    lastLine = line;
    // A redrawn line must not wrap, or the carriage return no longer reaches its start.
    stream.write(tty ? `\r\x1b[K${line.slice(0, Math.max(20, (stream.columns ?? 80) - 1))}` : `${line}\n`);
    lastAt = now();
    pending = undefined;
  };
  return {
    update(line, phase) {
      if (line === lastLine) {
        // Nothing new to say (a long-poll that answered with the same progress).
        pending = undefined;
      } else if (phase !== lastPhase) {
        // The last state of the phase that ended, then the new one.
        if (pending !== undefined && !tty) write(pending);
        lastPhase = phase;
        write(line);
      } else if (now() - lastAt >= interval) {
        write(line);
      } else {
        pending = line;
      }
    },
    done() {
      if (pending !== undefined) write(pending);
      if (tty) stream.write("\n");
    },
  };
}

/** Columns left for a progress bar on this terminal. */
export function barWidthFor(stream: NodeJS.WriteStream = process.stderr): number {
  if (!stream.isTTY) return 0;
  return Math.max(10, Math.min(40, (stream.columns ?? 80) - 80));
}
