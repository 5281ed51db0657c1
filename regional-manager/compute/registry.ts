// The compute drivers a regional manager can run, by kind.
//
// Adding a driver takes one new module and one line here:
//   1. Write regional-manager/compute/<kind>/driver.ts exporting a class that implements
//      ComputeDriver (types.ts) and whose constructor takes options extending DriverOptions.
//      Reuse validation.ts (spec checks), instance-record.ts (state that survives a restart),
//      console-log.ts and exit.ts; register each instance with options.metadata and route the
//      guest's 169.254.169.254:80 to the endpoint it returns; emit "state" on every change and
//      "ready" when the guest PUTs globalvm/ready (see the qemu driver).
//   2. Add `<kind>: (options) => new <Kind>Driver(options),` to DRIVERS below.
// The manager then selects it with createComputeDriver("<kind>", options), typically from the
// datacenter's configured driver kind.
import { QemuDriver, type QemuDriverOptions } from "./qemu/driver.ts";
import { type ComputeDriver, ComputeError } from "./types.ts";

const DRIVERS = {
  qemu: (options: QemuDriverOptions): ComputeDriver => new QemuDriver(options),
} as const;

export type ComputeDriverKind = keyof typeof DRIVERS;
export type ComputeDriverOptions<K extends ComputeDriverKind> = Parameters<(typeof DRIVERS)[K]>[0];

export const COMPUTE_DRIVER_KINDS = Object.keys(DRIVERS) as ComputeDriverKind[];

export function isComputeDriverKind(kind: string): kind is ComputeDriverKind {
  return Object.hasOwn(DRIVERS, kind);
}

/** Throws a ComputeError (invalid-argument) for a kind no module registered. */
export function createComputeDriver(
  kind: string,
  options: ComputeDriverOptions<ComputeDriverKind>,
): ComputeDriver {
  if (!isComputeDriverKind(kind)) {
    throw new ComputeError(
      "invalid-argument",
      `unknown compute driver ${JSON.stringify(kind)}; known: ${COMPUTE_DRIVER_KINDS.join(", ")}`,
      "kind",
    );
  }
  return DRIVERS[kind](options);
}
