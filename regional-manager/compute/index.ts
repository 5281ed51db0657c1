// Compute drivers of the regional manager: what the manager service imports.
//
//   const metadata = new MetadataService();                  // ../metadata
//   const driver = createComputeDriver("qemu", { dataDir, metadata, capacity, probeGuest });
//   driver.on("state", (change) => report(change));          // starting/running/ready/stopped/failed
//   await driver.reattach();                                 // on every manager start, before anything else
//   await driver.create(spec); await driver.start(spec.instanceId);
//   await driver.setMetadata(id, values);                    // a dependent value became known
//   await driver.stop(id); await driver.delete(id);
//
// Adding a driver: see registry.ts.
export type { Accelerator, AcceleratorChoice, ProbeGuest } from "./accelerator.ts";
export { probeAccelerator } from "./accelerator.ts";
export type { QemuDriverOptions } from "./qemu/driver.ts";
export { QemuDriver, READY_ATTRIBUTE } from "./qemu/driver.ts";
export type { CatalogInstance, ReconcilePlan } from "./reconcile.ts";
export { planReconciliation } from "./reconcile.ts";
export type { ComputeDriverKind, ComputeDriverOptions } from "./registry.ts";
export { COMPUTE_DRIVER_KINDS, createComputeDriver, isComputeDriverKind } from "./registry.ts";
export type {
  Capacity,
  ComputeDriver,
  ComputeDriverEvents,
  ComputeErrorCode,
  ConsoleLine,
  DriverOptions,
  ImageFormat,
  InstanceSpec,
  InstanceState,
  InstanceStateChange,
  InstanceStatus,
} from "./types.ts";
export { ComputeError, CREATED_REASON } from "./types.ts";
