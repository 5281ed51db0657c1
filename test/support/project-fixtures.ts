// Fresh objects of one project, one call each: made through the API as the project's writer
// makes them, or recorded in the catalog as the orchestrator records them. For a catalog with
// the regions eu-west and us-east and their registered datacenters eu-west-a and us-east-a.
import { imageReplicas, instances } from "../../api/catalog/schema.ts";
import { newId } from "../../api/ids.ts";
import { ID_PREFIXES, type IdKind } from "../../schemas/common.ts";
import type { TestApi } from "./api.ts";

/** A manager's report that it holds the version, under its own ID for it (unique per datacenter). */
export function replicaReport(localId: string) {
  return { state: "available", local_id: localId, digest: `sha256:${"ab".repeat(32)}`, size: 4096 };
}
export const SMALL_MACHINE = { vcpus: 1, memory_mb: 256 };

export function firewallRule(name: string) {
  return { name, action: "allow", protocol: "tcp", ports: ["22"], source: { cidr: "10.0.0.0/8" } };
}

let counter = 0;

export interface FixtureOptions {
  project: string;
  /** The project's read-write token. */
  writer: string;
  /** The manager credential of eu-west-a, which commits uploads to eu-west. */
  euManager: string;
  /** In the name of every object made. */
  mark: string;
}

export type ProjectFixtures = ReturnType<typeof projectFixtures>;

export function projectFixtures(api: TestApi, { project, writer, euManager, mark }: FixtureOptions) {
  /** The IDs of everything made, in order. */
  const made: string[] = [];
  const keep = (id: string) => {
    made.push(id);
    return id;
  };
  const marked = () => `${mark}-${++counter}`;
  const create = (path: string, body: unknown) =>
    api.expectStatus(201, "POST", path, { token: writer, body });
  const f = {
    project,
    made,
    /** A name not yet taken, without the mark. */
    fresh: () => `new-${++counter}`,
    cidr: () => `10.${(++counter % 250) + 1}.0.0/16`,
    network: async () => keep((await create("/v1/networks", { name: marked(), cidr: f.cidr() })).id),
    /** The path of a rule of a new network. */
    rule: async () => {
      const network = await f.network();
      const created = await create(`/v1/networks/${network}/firewall-rules`, firewallRule(marked()));
      return `/v1/networks/${network}/firewall-rules/${keep(created.id)}`;
    },
    /** An image of origin eu-west, with no version yet. */
    image: async () => keep((await create("/v1/images", { name: marked(), origin_region: "eu-west" })).id),
    /** An image whose version 1 eu-west-a holds. */
    committedImage: async () => {
      const image = await f.image();
      await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${image}/versions/1`, {
        token: euManager,
        body: replicaReport(`eu-${image}`),
      });
      return image;
    },
    /** An image whose versions 1 and 2 eu-west-a holds. */
    twoVersionImage: async () => {
      const image = await f.committedImage();
      await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${image}/versions/2`, {
        token: euManager,
        body: replicaReport(`eu-${image}-2`),
      });
      return image;
    },
    /** The family of a committed image: a fresh name, so that it carries no mark. */
    family: async () => {
      const family = f.fresh();
      const image = keep(
        (await create("/v1/images", { name: marked(), origin_region: "eu-west", family })).id,
      );
      await api.expectStatus(204, "PUT", `/v1/datacenters/eu-west-a/replicas/${image}/versions/1`, {
        token: euManager,
        body: replicaReport(`eu-${image}`),
      });
      return family;
    },
    /** A committed image that us-east-a was asked to pull. */
    pulledImage: async () => {
      const image = await f.committedImage();
      await api.services.db
        .insert(imageReplicas)
        .values({ imageId: image, version: 1, datacenter: "us-east-a", state: "pending" });
      return image;
    },
    /** A VM group in eu-west, and the operation creating it (pending: no orchestrator runs). */
    vmGroup: async () => {
      const name = marked();
      const operation = await api.expectStatus(202, "POST", "/v1/vm-groups", {
        token: writer,
        body: { name, image: await f.image(), region: "eu-west", size: 1, machine: SMALL_MACHINE },
      });
      return { group: keep(operation.target.id), operation: keep(operation.id), name };
    },
    /** An instance (ordinal 0) of a new group, placed in eu-west-a. */
    instance: async () => {
      const { group, name } = await f.vmGroup();
      const instance = keep(newId("instance"));
      await api.services.db
        .insert(instances)
        .values({ id: instance, vmGroupId: group, ordinal: 0, datacenter: "eu-west-a" });
      return { group, instance, groupName: name };
    },
    /** A token of the project (made by the admin). */
    token: async () => {
      const token = await api.expectStatus(201, "POST", `/v1/projects/${project}/tokens`, {
        body: { name: marked() },
      });
      return keep(token.id);
    },
  };
  return f;
}

/** A new ID of the same kind as `id`, which nothing has. */
export function ghostOf(id: string): string {
  const prefix = id.slice(0, id.indexOf("_"));
  const kind = Object.entries(ID_PREFIXES).find(([, p]) => p === prefix)?.[0] as IdKind | undefined;
  if (!kind) throw new Error(`${id} is no ID`);
  return newId(kind);
}
