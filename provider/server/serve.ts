// The provider served in the process Terraform started: one session (session.ts) on this
// process's own environment, and the process exits when the session ends.

import type { ProviderDefinition } from "../framework/definitions.ts";
import { exitWhenOrphaned, ignoreInterrupts } from "./process-hygiene.ts";
import { startSession } from "./session.ts";

export function serveProvider<P>(provider: ProviderDefinition<P>): void {
  ignoreInterrupts();
  exitWhenOrphaned();
  startSession(
    provider,
    { env: process.env, cwd: process.cwd() },
    {
      stdout: (text) => process.stdout.write(text),
      stderr: (text) => process.stderr.write(text),
      end: (code) => process.exit(code),
    },
  );
}
