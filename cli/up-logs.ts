// Where `globalvm up` writes its services' logs: JSON lines in <data-dir>/logs/ (one file per
// service: control-plane.log, <datacenter>.log; 0600 in a 0700 directory), and the short human
// lines it always printed on the terminal (not the request lines: those stay in the files).
import { join } from "node:path";
import {
  createLogger,
  humanLines,
  type Logger,
  type LogLevel,
  logFile,
  logLevelFrom,
  logStreams,
} from "../common/log.ts";

export const LOGS_DIR = "logs";

export function upLogFile(dataDir: string, name: string): string {
  return join(dataDir, LOGS_DIR, `${name}.log`);
}

export function upLoggers(
  dataDir: string,
  terminal: (line: string) => void,
  level: LogLevel = logLevelFrom(),
): {
  controlPlane(): Logger;
  manager(datacenter: string): Logger;
  hostAgent(datacenter: string, host: string): Logger;
} {
  const make = (name: string, service: string, datacenter?: string, host?: string) =>
    createLogger({
      service,
      ...(datacenter ? { datacenter } : {}),
      ...(host ? { host } : {}),
      level,
      destination: logStreams([
        { level, stream: logFile(upLogFile(dataDir, name)) },
        { level, stream: humanLines(name, terminal) },
      ]),
    });
  return {
    controlPlane: () => make("control-plane", "control-plane"),
    manager: (datacenter) => make(datacenter, "regional-manager", datacenter),
    hostAgent: (datacenter, host) => make(`${datacenter}-${host}`, "host-agent", datacenter, host),
  };
}
