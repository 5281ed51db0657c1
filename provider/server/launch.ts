// What the provider executable does when started. Terraform starts it as a plugin: the
// launch is served by this build's daemon when one can be used (daemon-client.ts), else in
// this process (serve.ts). Started with DAEMON_FLAG it is that daemon (daemon.ts).
//
// The provider's own code is loaded only where it runs: a launch served by the daemon
// needs none of it, which is what makes it cheap.

import type { ProviderDefinition } from "../framework/definitions.ts";
import { DAEMON_FLAG } from "./daemon-protocol.ts";
import { checkPluginEnvironment } from "./handshake.ts";
import { exitWhenOrphaned, ignoreInterrupts } from "./process-hygiene.ts";

/** Whether this process was started to serve (by Terraform, or as the daemon), not imported. */
export function startedAsProvider(): boolean {
  return (
    process.env.TF_PLUGIN_MAGIC_COOKIE !== undefined ||
    process.argv.some((argument) => argument.startsWith(`${DAEMON_FLAG}=`))
  );
}

export function launchProvider<P>(load: () => Promise<ProviderDefinition<P>>): void {
  const daemonArgument = process.argv.find((argument) => argument.startsWith(`${DAEMON_FLAG}=`));
  if (daemonArgument) {
    const idle = process.argv.find((argument) => argument.startsWith("--idle-ms="));
    void Promise.all([import("./daemon.ts"), load()]).then(([daemon, provider]) =>
      daemon.runDaemon(provider, {
        socketPath: daemonArgument.slice(DAEMON_FLAG.length + 1),
        idleMs: Number(idle?.slice("--idle-ms=".length)) || 600_000,
      }),
    );
    return;
  }
  void launch(load);
}

async function launch<P>(load: () => Promise<ProviderDefinition<P>>): Promise<void> {
  const serveHere = async () => (await import("./serve.ts")).serveProvider(await load());
  const executable = process.argv[1];
  // Run by hand (no plugin cookie), the in-process path prints go-plugin's message.
  if (!executable || !checkPluginEnvironment(process.env).ok) return serveHere();
  const { connectToDaemon, daemonLaunchFor, relaySession } = await import("./daemon-client.ts");
  let daemon: ReturnType<typeof daemonLaunchFor> = null;
  try {
    daemon = daemonLaunchFor(executable, process.env);
  } catch {
    // The executable cannot be read back (removed since): serve here.
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
