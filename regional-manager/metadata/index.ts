// The per-instance metadata service (GCE metadata server semantics) of the regional manager.
export type { GuestAttributes, InstanceIdentity, MetadataTree } from "./document.ts";
export { buildInstanceDocument, etagOf } from "./document.ts";
export type {
  GuestAttributeLimits,
  GuestAttributeWrite,
  MetadataEndpoint,
  MetadataServiceOptions,
  RegisterInstanceOptions,
} from "./service.ts";
export {
  DEFAULT_GUEST_ATTRIBUTE_LIMITS,
  guestAttributeRefusal,
  MetadataError,
  MetadataService,
} from "./service.ts";
