// The provider program: the bundle beside the executable that holds the provider and the two
// ways to serve it. The executable itself is only the launcher (launcher-main.ts): a launch the
// daemon serves never loads the program, which is what keeps a launch cheap.

import type { ProviderDefinition } from "../framework/definitions.ts";
import type { runDaemon } from "./daemon.ts";
import type { serveProvider } from "./serve.ts";

/** The program's file is the executable's path with this appended. */
export const PROGRAM_SUFFIX = ".program.cjs";

export interface ProviderProgram {
  // biome-ignore lint/suspicious/noExplicitAny: the launcher serves whatever data the provider's configure makes
  provider: ProviderDefinition<any>;
  serveProvider: typeof serveProvider;
  runDaemon: typeof runDaemon;
}
