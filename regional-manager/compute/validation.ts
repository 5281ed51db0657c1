// Checks of what a manager asks a driver to do, shared by every driver.
import { isAbsolute } from "node:path";
import { parseIpv4 } from "../../schemas/ipv4.ts";
import { type Capacity, ComputeError, type GuestNetworkInterface, type InstanceSpec } from "./types.ts";

/** Instance IDs name directories and sockets, so they are kept to a safe alphabet. */
const INSTANCE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const METADATA_KEY_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
/** Below this no Linux guest boots. */
export const MIN_MEMORY_MB = 64;

export function validateInstanceId(instanceId: string): void {
  if (!INSTANCE_ID_PATTERN.test(instanceId)) {
    throw new ComputeError(
      "invalid-argument",
      `instanceId must be 1-64 letters, digits, "_", "." or "-" starting with a letter or digit, got ${JSON.stringify(instanceId)}`,
      "instanceId",
    );
  }
}

/** Refuses a spec that no start could satisfy; what depends on other instances is checked at start. */
export function validateInstanceSpec(spec: InstanceSpec, capacity: Capacity): void {
  validateInstanceId(spec.instanceId);
  for (const field of ["name", "vmGroup", "region", "datacenter"] as const) {
    if (typeof spec[field] !== "string" || spec[field].length === 0) {
      throw new ComputeError("invalid-argument", `${field} must be a non-empty string`, field);
    }
  }
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) {
    throw new ComputeError(
      "invalid-argument",
      `vcpus must be a whole number of at least 1, got ${spec.vcpus}`,
      "vcpus",
    );
  }
  if (spec.vcpus > capacity.vcpus) {
    throw new ComputeError(
      "capacity-exceeded",
      `vcpus ${spec.vcpus} is more than this datacenter gives one instance (${capacity.vcpus})`,
      "vcpus",
    );
  }
  if (!Number.isInteger(spec.memoryMb) || spec.memoryMb < MIN_MEMORY_MB) {
    throw new ComputeError(
      "invalid-argument",
      `memoryMb must be a whole number of at least ${MIN_MEMORY_MB}, got ${spec.memoryMb}`,
      "memoryMb",
    );
  }
  if (spec.memoryMb > capacity.memoryMb) {
    throw new ComputeError(
      "capacity-exceeded",
      `memoryMb ${spec.memoryMb} is more than this datacenter's capacity (${capacity.memoryMb} MiB)`,
      "memoryMb",
    );
  }
  if (spec.image.format !== "raw" && spec.image.format !== "qcow2") {
    throw new ComputeError(
      "invalid-argument",
      `image.format must be raw or qcow2, got ${JSON.stringify(spec.image.format)}`,
      "image.format",
    );
  }
  if (spec.networkInterface) validateNetworkInterface(spec.networkInterface);
  if (!isAbsolute(spec.image.path)) {
    throw new ComputeError(
      "invalid-argument",
      `image.path must be absolute, got ${JSON.stringify(spec.image.path)}`,
      "image.path",
    );
  }
  for (const [key, value] of Object.entries(spec.metadata)) {
    if (!METADATA_KEY_PATTERN.test(key)) {
      throw new ComputeError(
        "invalid-argument",
        `metadata key ${JSON.stringify(key)} must be 1-128 letters, digits, "_" or "-"`,
        `metadata.${key}`,
      );
    }
    if (typeof value !== "string") {
      throw new ComputeError(
        "invalid-argument",
        `metadata value of ${key} must be a string`,
        `metadata.${key}`,
      );
    }
  }
}

/** Refuses to start an instance whose memory does not fit beside the ones already started. */
export function checkMemoryAvailable(requestedMb: number, startedMb: number, capacity: Capacity): void {
  if (startedMb + requestedMb > capacity.memoryMb) {
    throw new ComputeError(
      "capacity-exceeded",
      `memoryMb ${requestedMb} does not fit: ${startedMb} of ${capacity.memoryMb} MiB are used by started instances`,
      "memoryMb",
    );
  }
}

function validateNetworkInterface(nic: GuestNetworkInterface): void {
  const field = (name: string) => `networkInterface.${name}`;
  if (parseIpv4(nic.address) === undefined) {
    throw new ComputeError(
      "invalid-argument",
      `${field("address")} must be an IPv4 address`,
      field("address"),
    );
  }
  if (nic.endpoints && parseIpv4(nic.endpoints.gateway) === undefined) {
    throw new ComputeError(
      "invalid-argument",
      `${field("endpoints.gateway")} must be an IPv4 address`,
      field("endpoints.gateway"),
    );
  }
  if (!Number.isInteger(nic.prefixLength) || nic.prefixLength < 8 || nic.prefixLength > 30) {
    throw new ComputeError(
      "invalid-argument",
      `${field("prefixLength")} must be a whole number from 8 to 30, got ${nic.prefixLength}`,
      field("prefixLength"),
    );
  }
  if (!Number.isInteger(nic.mtu) || nic.mtu < 576 || nic.mtu > 9000) {
    throw new ComputeError(
      "invalid-argument",
      `${field("mtu")} must be a whole number from 576 to 9000, got ${nic.mtu}`,
      field("mtu"),
    );
  }
  if (!Number.isInteger(nic.vni) || nic.vni < 1 || nic.vni > 16_777_215) {
    throw new ComputeError(
      "invalid-argument",
      `${field("vni")} must be a VXLAN identifier (1 to 2^24 − 1)`,
      field("vni"),
    );
  }
  if (typeof nic.network !== "string" || nic.network.length === 0) {
    throw new ComputeError("invalid-argument", `${field("network")} must be a network ID`, field("network"));
  }
}
