// Logs go to stderr as hclog JSON lines; go-plugin forwards them into Terraform's log
// (TF_LOG=INFO shows info and above) with their level intact.

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  trace(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  with(fields: LogFields): Logger;
}

/** hclog's timestamp layout has microseconds; Go parses a fixed number of fractional digits. */
function hclogTimestamp(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export function formatLogLine(
  level: LogLevel,
  module: string,
  message: string,
  fields: LogFields,
  now: Date,
): string {
  return JSON.stringify({
    "@level": level,
    "@message": message,
    "@module": module,
    "@timestamp": hclogTimestamp(now),
    ...fields,
  });
}

export function createLogger(
  module: string,
  write: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  baseFields: LogFields = {},
): Logger {
  const log =
    (level: LogLevel) =>
    (message: string, fields: LogFields = {}) =>
      write(formatLogLine(level, module, message, { ...baseFields, ...fields }, new Date()));
  return {
    trace: log("trace"),
    debug: log("debug"),
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
    with: (fields) => createLogger(module, write, { ...baseFields, ...fields }),
  };
}
