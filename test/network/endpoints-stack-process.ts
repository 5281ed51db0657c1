// The endpoints flow of endpoints-stack.test.ts, run inside the WAN namespace (this machine's
// stand-in): a web group of 2 in us-east exposes port 80; its manager runs here, beside the
// control plane, with the datacenter's host in a namespace (as `globalvm up` does), so the
// endpoint is on this namespace's loopback. The guests also resolve internal names through
// their manager's DNS. Prints one JSON line with what it saw.
import { execFileSync } from "node:child_process";
import { connect } from "node:net";
import { join } from "node:path";
import { metadataSocketDir } from "../../regional-manager/network/namespace-host.ts";
import { INTERNAL_NAME_TTL_SECONDS } from "../../schemas/internal-names.ts";
import { resolveNames, SERVE_NAME } from "../support/guest-scripts.ts";
import {
  createGroup,
  createGuestImage,
  expectSucceeded,
  listInstances,
  uploadGuestVersion,
} from "../support/vm-groups.ts";
import { get } from "./http-get.ts";
import {
  allowFromAnywhere,
  type NetworkStackConfig,
  readStackConfig,
  runAndReport,
  startNetworkStack,
} from "./stack-hosts.ts";

const { config, first } = readStackConfig<NetworkStackConfig>("endpoints-stack-process.ts");

/** Keeps requesting the endpoint until stopped; counts answers by body and failures by kind. */
function loadLoop(address: string) {
  const counts = {
    ok: 0,
    failed: 0,
    answers: {} as Record<string, number>,
    failures: {} as Record<string, number>,
  };
  let running = true;
  const done = (async () => {
    while (running) {
      const answer = await get(address);
      const bucket = answer.ok ? counts.answers : counts.failures;
      bucket[answer.text] = (bucket[answer.text] ?? 0) + 1;
      if (answer.ok) counts.ok++;
      else counts.failed++;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    counts,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/** The A records a manager's DNS listener gives for `name` (a query over TCP, as a guest's resolver sends it). */
function askDns(socket: string, name: string): Promise<{ rcode: number; addresses: string[] }> {
  const labels = name
    .split(".")
    .map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)]));
  const message = Buffer.concat([
    Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]),
    ...labels,
    Buffer.from([0, 0, 1, 0, 1]),
  ]);
  const length = Buffer.from([message.length >> 8, message.length & 0xff]);
  return new Promise((resolve, reject) => {
    const connection = connect({ path: socket });
    let received = Buffer.alloc(0);
    connection.on("error", reject);
    connection.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2 || received.length < 2 + received.readUInt16BE(0)) return;
      connection.destroy();
      const answer = received.subarray(2);
      const count = answer.readUInt16BE(6);
      // Each A record follows the echoed question: a name pointer, type, class, TTL, length, address.
      const records = answer.subarray(answer.length - 16 * count);
      const addresses = [...Array(count).keys()].map((i) =>
        [...records.subarray(16 * i + 12, 16 * i + 16)].join("."),
      );
      resolve({ rcode: answer.readUInt16BE(2) & 0x0f, addresses });
    });
    connection.write(Buffer.concat([length, message]));
  });
}

const stack = await startNetworkStack("endpoints", config, { GLOBALVM_HEARTBEAT_INTERVAL_MS: "1000" });
const result: Record<string, unknown> = {};
await runAndReport(stack, result, async () => {
  const image = await createGuestImage(stack, "guest", first);
  const web = await createGroup(stack, {
    name: "web",
    image,
    region: first,
    size: 2,
    expose: [{ port: 80 }],
    metadata: {
      "startup-script": [
        SERVE_NAME,
        resolveNames("web", {
          "web-0": `web-0.web.${first}.acme.globalvm.internal`,
          "web-1": "web-1",
          group: `web.${first}.acme.globalvm.internal`,
          outside: "example.com",
          "other-project": `web.${first}.other.globalvm.internal`,
        }),
      ].join("\n"),
    },
  });
  await expectSucceeded(stack, web.operationId, 400_000);
  const group = (await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)).body;
  result.endpoints = group.endpoints;
  const address = group.endpoints?.[0]?.address as string;
  const instances = await listInstances(stack, web.groupId);
  result.instances = instances.map((i) => [i.name, i.state]);

  // Internal names: what each guest resolved, and the group's name asked of the manager's DNS as
  // the first guest asks it, once both instances are ready.
  const resolvedDeadline = Date.now() + 180_000;
  let named = instances;
  while (!named.every((i) => i.guest_attributes["dns/other-project"]) && Date.now() < resolvedDeadline) {
    await new Promise((r) => setTimeout(r, 1000));
    named = await listInstances(stack, web.groupId);
  }
  result.addresses = Object.fromEntries(named.map((i) => [i.name, i.network_ip]));
  result.resolved = Object.fromEntries(
    named.map((i) => [
      i.name,
      Object.fromEntries(
        Object.entries(i.guest_attributes)
          .filter(([key]) => key.startsWith("dns/"))
          .map(([key, value]) => [key.slice(4), value]),
      ),
    ]),
  );
  const [web0] = named;
  if (web0) {
    // The guests' own lookups may have been answered before web-1 was ready, and the manager
    // keeps an answer for the names' TTL: ask once that has run out.
    await new Promise((r) => setTimeout(r, (INTERNAL_NAME_TTL_SECONDS + 1) * 1000));
    const sockets = metadataSocketDir(join(stack.dir, web0.datacenter));
    result.groupAnswer = await askDns(
      join(sockets, `${web0.id}.dns.sock`),
      `web.${first}.acme.globalvm.internal`,
    );
  }

  // The default network lets its own instances talk; the outside needs a rule.
  result.withoutRule = await get(address);
  const asked = Date.now();
  await allowFromAnywhere(stack, 80);
  while (!(await get(address)).ok && Date.now() - asked < 10_000) await new Promise((r) => setTimeout(r, 50));
  result.allowedAfterMs = Date.now() - asked;
  const seen = new Set<string>();
  for (let i = 0; i < 20 && seen.size < 2; i++) seen.add((await get(address)).text);
  result.seen = [...seen].sort();

  // A rolling update (a new version the group follows), then a resize to 1, under load.
  const load = loadLoop(address);
  await uploadGuestVersion(stack, image, 2, "endpoints v2");
  const deadline = Date.now() + 600_000;
  for (;;) {
    const instances = await listInstances(stack, web.groupId);
    const rolled =
      instances.length === 2 && instances.every((i) => i.image_version === 2 && i.state === "ready");
    const current = (await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)).body;
    if (rolled && current.state === "ready") break;
    if (Date.now() > deadline) throw new Error(`rolling update did not finish: ${JSON.stringify(instances)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const resize = await stack.call("PATCH", `/v1/vm-groups/${web.groupId}`, stack.projectToken, { size: 1 });
  if (resize.status !== 202) throw new Error(`resize: ${resize.status} ${JSON.stringify(resize.body)}`);
  await expectSucceeded(stack, resize.body.id, 120_000);
  await load.stop();
  result.underLoad = load.counts;
  result.afterResize = (
    await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)
  ).body.endpoints;

  const deleted = await stack.call("DELETE", `/v1/vm-groups/${web.groupId}`, stack.projectToken);
  await expectSucceeded(stack, deleted.body.id, 120_000);
  result.afterDelete = await get(address);
  const host = config.regions[0]?.netns as string;
  result.natAfterDelete = execFileSync("ip", ["netns", "exec", host, "nft", "list", "ruleset"], {
    encoding: "utf8",
  }).includes("dnat");
});
