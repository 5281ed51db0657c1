// Shared by the VM-group lifecycle tests (rolling update, dependent configuration, resize):
// following operations, uploading image versions, and looking at what a manager keeps on disk.
import { appendFileSync, copyFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { uploadImage } from "../../client/upload.ts";
import { readInstanceRecord } from "../../regional-manager/compute/instance-record.ts";
import { ensureGuestImage } from "./compute.ts";
import type { Stack } from "./stack.ts";
import { waitForStackOperation } from "./stack-probes.ts";

/** Long-polls an operation until it is done; a timeout lists its VM group's instances and the logs. */
export function waitForOperation(stack: Stack, id: string, timeoutMs: number) {
  return waitForStackOperation(stack, id, timeoutMs, async (last) => {
    const target = (last as { target?: { type: string; id: string } } | undefined)?.target;
    if (target?.type !== "vm-group") return [];
    return (await listInstances(stack, target.id)).map(
      (i) => `${i.name} ${i.id} ${i.state} v${i.image_version}`,
    );
  });
}

/** Expects an operation to succeed and returns it; a failure shows its error and the logs. */
export async function expectSucceeded(stack: Stack, id: string, timeoutMs: number) {
  const operation = await waitForOperation(stack, id, timeoutMs);
  if (operation.state !== "succeeded") {
    throw new Error(
      `operation ${id} ended ${operation.state}: ${JSON.stringify(operation.error)}\n${stack.logs()}`,
    );
  }
  return operation;
}

/** Creates an image in `region` and uploads the guest image as its version 1. */
export async function createGuestImage(stack: Stack, name: string, region: string): Promise<string> {
  const guest = ensureGuestImage();
  const image = await stack.call("POST", "/v1/images", stack.projectToken, {
    name,
    origin_region: region,
    format: "qcow2",
  });
  if (image.status !== 201) throw new Error(`image: ${image.status} ${JSON.stringify(image.body)}`);
  await uploadImage({
    path: guest,
    managerUrl: image.body.upload.url,
    token: image.body.upload.token,
    imageId: image.body.id,
    version: 1,
    format: "qcow2",
  });
  return image.body.id;
}

/**
 * Uploads another version of the guest image: the same disk with `tag` appended after its end.
 * QEMU reads a qcow2 image through its own tables, so bytes past them change the digest (a new
 * version) and nothing of what boots.
 */
export async function uploadGuestVersion(stack: Stack, imageId: string, version: number, tag: string) {
  const path = join(stack.dir, `guest-v${version}.qcow2`);
  copyFileSync(ensureGuestImage(), path);
  appendFileSync(path, Buffer.from(`\n${tag}\n`));
  const ticket = await stack.call("POST", `/v1/images/${imageId}/uploads`, stack.projectToken);
  if (ticket.status !== 201)
    throw new Error(`upload ticket: ${ticket.status} ${JSON.stringify(ticket.body)}`);
  return uploadImage({
    path,
    managerUrl: ticket.body.url,
    token: ticket.body.token,
    imageId,
    version,
    format: "qcow2",
  });
}

export async function createGroup(stack: Stack, body: Record<string, unknown>) {
  const created = await stack.call("POST", "/v1/vm-groups", stack.projectToken, {
    machine: { vcpus: 1, memory_mb: 160 },
    ...body,
  });
  if (created.status !== 202) throw new Error(`vm group: ${created.status} ${JSON.stringify(created.body)}`);
  return { groupId: created.body.target.id as string, operationId: created.body.id as string };
}

export interface InstanceView {
  id: string;
  name: string;
  ordinal: number;
  datacenter: string;
  network_ip: string | null;
  address: string | null;
  state: string;
  image_version: number | null;
  guest_attributes: Record<string, string>;
  updated_at: string;
}

export async function listInstances(stack: Stack, groupId: string): Promise<InstanceView[]> {
  const answer = await stack.call("GET", `/v1/vm-groups/${groupId}/instances`, stack.projectToken);
  if (answer.status !== 200) throw new Error(`instances: ${answer.status} ${JSON.stringify(answer.body)}`);
  return (answer.body.items as InstanceView[]).sort(
    (a, b) => a.ordinal - b.ordinal || a.id.localeCompare(b.id),
  );
}

/** Where the manager of `datacenter` keeps an instance: its record, overlay and console log. */
export function instanceDir(stack: Stack, datacenter: string, instanceId: string): string {
  return join(stack.dir, datacenter, "compute", "instances", instanceId);
}

export function overlayExists(stack: Stack, datacenter: string, instanceId: string): boolean {
  return existsSync(join(instanceDir(stack, datacenter, instanceId), "overlay.qcow2"));
}

/** The loopback port of the instance's own metadata listener (what its guest's 169.254.169.254 reaches). */
export function metadataPortOf(stack: Stack, datacenter: string, instanceId: string): number {
  return readInstanceRecord(instanceDir(stack, datacenter, instanceId)).metadataPort;
}

export function consoleOf(stack: Stack, datacenter: string, instanceId: string): string {
  const path = join(instanceDir(stack, datacenter, instanceId), "console.log");
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}
