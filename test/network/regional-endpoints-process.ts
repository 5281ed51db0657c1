// The flow of regional-endpoints.test.ts, run inside the WAN namespace (this machine's stand-in):
// region eu-west has two datacenters, each a host namespace whose manager runs here beside the
// control plane (as `globalvm up` runs them), so both datacenters' endpoints are on this
// namespace's loopback. A regional group of 2 (`even`) exposes port 80: each datacenter gives the
// port an address of its own that reaches the instance it runs. Prints one JSON line.
import type { VmGroupEndpoint } from "../../schemas/vm-groups.ts";
import { SERVE_NAME } from "../support/guest-scripts.ts";
import { createGroup, createGuestImage, expectSucceeded, listInstances } from "../support/vm-groups.ts";
import { get, getWhenServing } from "./http-get.ts";
import {
  allowFromAnywhere,
  type NetworkStackConfig,
  readStackConfig,
  runAndReport,
  startNetworkStack,
} from "./stack-hosts.ts";

const { config, first } = readStackConfig<NetworkStackConfig>("regional-endpoints-process.ts");

// A short name: the data dir holds unix sockets, whose paths are limited to 107 bytes.
const stack = await startNetworkStack("rgep", config, {
  GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000",
});
const result: Record<string, unknown> = {};
await runAndReport(stack, result, async () => {
  const image = await createGuestImage(stack, "guest", first);
  const web = await createGroup(stack, {
    name: "web",
    image,
    region: first,
    distribution: "even",
    size: 2,
    expose: [{ port: 80 }],
    metadata: { "startup-script": SERVE_NAME },
  });
  await expectSucceeded(stack, web.operationId, 400_000);
  const instances = await listInstances(stack, web.groupId);
  result.instances = instances.map((i) => [i.name, i.datacenter, i.state]);

  await allowFromAnywhere(stack, 80);

  // Each instance reports its datacenter's endpoints; wait until both datacenters have.
  const deadline = Date.now() + 60_000;
  let endpoints: VmGroupEndpoint[] = [];
  while (endpoints.length < 2 && Date.now() < deadline) {
    endpoints = (await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)).body.endpoints;
    if (endpoints.length < 2) await new Promise((r) => setTimeout(r, 500));
  }
  result.endpoints = endpoints;
  // What each datacenter's address answers: the name of the instance that datacenter runs.
  const answers: Record<string, string> = {};
  for (const endpoint of endpoints) {
    const answer = await getWhenServing(endpoint.address, 20_000);
    answers[endpoint.datacenter] = answer.ok ? answer.text : `failed: ${answer.text}`;
  }
  result.answers = answers;

  // Down to 1: the datacenter left with no instance has no endpoint, the other keeps its address.
  const resize = await stack.call("PATCH", `/v1/vm-groups/${web.groupId}`, stack.projectToken, { size: 1 });
  if (resize.status !== 202) throw new Error(`resize: ${resize.status} ${JSON.stringify(resize.body)}`);
  await expectSucceeded(stack, resize.body.id, 120_000);
  result.afterResize = {
    instances: (await listInstances(stack, web.groupId)).map((i) => [i.name, i.datacenter]),
    endpoints: (await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)).body.endpoints,
  };
  const gone = endpoints.find((e) => !instancesIn(result.afterResize, e.datacenter));
  if (gone) result.goneAnswer = await get(gone.address);
});

function instancesIn(after: unknown, datacenter: string): boolean {
  return (after as { instances: [string, string][] }).instances.some(([, dc]) => dc === datacenter);
}
