// The quickstart's flow through a client generated from the control plane's OpenAPI
// document (openapi-typescript types + openapi-fetch): an image uploaded to eu-west, a VM
// group of 2 started in us-east, which lacks it, then both deleted.
//
//   npx openapi-typescript "$GLOBALVM_ENDPOINT/openapi.json" --default-non-nullable=false -o examples/openapi/globalvm-api.d.ts
//   npx node examples/openapi/client.ts [IMAGE_FILE]
import { createHash } from "node:crypto";
import { createReadStream, openAsBlob } from "node:fs";
import { fileURLToPath } from "node:url";
import createClient from "openapi-fetch";
import type { components, paths } from "./globalvm-api.d.ts";

type Operation = components["schemas"]["Operation"];

const endpoint = process.env.GLOBALVM_ENDPOINT;
const token = process.env.GLOBALVM_TOKEN;
if (!endpoint || !token) {
  console.error('set GLOBALVM_ENDPOINT and GLOBALVM_TOKEN (eval "$(npx globalvm env)" does)');
  process.exit(2);
}
const imageFile =
  process.argv[2] ?? fileURLToPath(new URL("../../.globalvm/images/guest.qcow2", import.meta.url));
const client = createClient<paths>({ baseUrl: endpoint, headers: { authorization: `Bearer ${token}` } });

/** openapi-fetch answers {data} or {error}; a problem+json error ends the example. */
function ok<T>(what: string, answer: { data?: T; error?: unknown; response: Response }): T {
  if (answer.data === undefined) {
    throw new Error(`${what}: ${answer.response.status} ${JSON.stringify(answer.error)}`);
  }
  return answer.data;
}

async function waitFor(operation: Operation): Promise<Operation> {
  let current = operation;
  while (!current.done) {
    current = ok(
      "get operation",
      await client.GET("/v1/operations/{id}", {
        params: { path: { id: current.id }, query: { wait: "30s" } },
      }),
    );
    const { step, bytes_done, bytes_total } = current.progress;
    console.error(
      `operation ${current.id}: ${current.state} ${step ?? ""} ${bytes_done}/${bytes_total ?? 0} bytes`,
    );
  }
  if (current.state !== "succeeded")
    throw new Error(`operation ${current.id} ${current.state}: ${JSON.stringify(current.error)}`);
  return current;
}

async function sha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const piece of createReadStream(path)) hash.update(piece);
  return hash.digest("hex");
}

// 1. The image: one global ID, and a ticket to send the bytes to eu-west's manager.
const image = ok(
  "create image",
  await client.POST("/v1/images", {
    body: { name: "web-client", origin_region: "eu-west", format: "qcow2" },
  }),
);
const ticket = image.upload;
if (!ticket) throw new Error(`image ${image.id} came without an upload ticket`);
// 2. The bytes go to the manager as one request; it chunks and verifies them.
const upload = await fetch(
  `${ticket.url}/v1/uploads/${image.id}/versions/${ticket.version}/image?format=qcow2`,
  {
    method: "PUT",
    headers: {
      authorization: `Bearer ${ticket.token}`,
      "x-image-digest": `sha256:${await sha256(imageFile)}`,
    },
    body: await openAsBlob(imageFile),
  },
);
if (!upload.ok) throw new Error(`upload: ${upload.status} ${await upload.text()}`);
console.error(`image ${image.id} uploaded to ${ticket.datacenter}`);

// 3. A group of 2 in us-east, which lacks the image: one call, then follow the operation.
const created = ok(
  "create vm group",
  await client.POST("/v1/vm-groups", {
    body: {
      name: "web-client",
      image: image.id,
      region: "us-east",
      size: 2,
      machine: { vcpus: 1, memory_mb: 256 },
    },
  }),
);
const groupId = (await waitFor(created)).target.id;
const instances = ok(
  "list instances",
  await client.GET("/v1/vm-groups/{id}/instances", { params: { path: { id: groupId }, query: {} } }),
);
const stored = ok("get image", await client.GET("/v1/images/{id}", { params: { path: { id: image.id } } }));
console.log(
  JSON.stringify({
    vm_group: groupId,
    instances: instances.items.map((i) => ({ id: i.id, datacenter: i.datacenter, state: i.state })),
    replicas: stored.replicas.map((r) => ({
      datacenter: r.datacenter,
      local_id: r.local_id,
      state: r.state,
    })),
  }),
);

// 4. Clean up: the group, then the image.
await waitFor(
  ok("delete vm group", await client.DELETE("/v1/vm-groups/{id}", { params: { path: { id: groupId } } })),
);
await waitFor(
  ok("delete image", await client.DELETE("/v1/images/{id}", { params: { path: { id: image.id } } })),
);
console.error(`deleted ${groupId} and ${image.id}`);
