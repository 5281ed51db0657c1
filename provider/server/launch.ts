// What the provider executable does when started. Terraform starts it as a plugin: the
// launch is served by this build's daemon when one can be used (daemon-client.ts), else in
// this process (serve.ts). Started with DAEMON_FLAG it is that daemon (daemon.ts).
//
// The provider program (program.ts) is loaded only where it runs: a launch served by the
// daemon needs none of it, which is what makes it cheap.

import { createRequire } from "node:module";
import { DAEMON_FLAG } from "./daemon-protocol.ts";
import { checkPluginEnvironment } from "./handshake.ts";
import { exitWhenOrphaned, ignoreInterrupts } from "./process-hygiene.ts";
import type { ProviderProgram } from "./program.ts";

export interface ProviderFiles {
  /** This executable. */
  launcher: string;
  /** The provider program beside it. */
  program: string;
}

export function launchProvider(files: ProviderFiles): void {
  const load = () => createRequire(files.program)(files.program) as ProviderProgram;
  const daemonArgument = process.argv.find((argument) => argument.startsWith(`${DAEMON_FLAG}=`));
  if (daemonArgument) {
    const idle = process.argv.find((argument) => argument.startsWith("--idle-ms="));
    const program = load();
    void program.runDaemon(program.provider, {
      socketPath: daemonArgument.slice(DAEMON_FLAG.length + 1),
      idleMs: Number(idle?.slice("--idle-ms=".length)) || 600_000,
    });
    return;
  }
  void launch(files, load);
}

async function launch(files: ProviderFiles, load: () => ProviderProgram): Promise<void> {
  const serveHere = () => {
    const program = load();
    program.serveProvider(program.provider);
  };
  // Run by hand (no plugin cookie), the in-process path prints go-plugin's message.
  if (!checkPluginEnvironment(process.env).ok) return serveHere();
  const { connectToDaemon, daemonLaunchFor, relaySession } = await import("./daemon-client.ts");
  let daemon: ReturnType<typeof daemonLaunchFor> = null;
  try {
    daemon = daemonLaunchFor(files, process.env);
  } catch {
    // The files cannot be read back (removed since): serve here.
  }
  if (!daemon) return serveHere();
  ignoreInterrupts();
  // Exiting closes the connection, which ends the session in the daemon.
  exitWhenOrphaned();
  const socket = await connectToDaemon(daemon).catch(() => null);
  if (!socket) return serveHere();
  await relaySession(socket, { env: { ...process.env }, cwd: process.cwd() });
  // The daemon went away before it served this launch.
  return serveHere();
}
