// The user's flow with guest networking, run inside the network namespace it is started in
// (the test starts it with `ip netns exec`, standing for one datacenter's host): a control plane
// and a regional manager that attaches guests to their networks, a `web` group serving HTTP, and
// a `client` group whose metadata takes web-0's address through metadata_from and whose
// startup-script connects to it. Prints what the API says of both groups as one JSON line.
//
// usage: node test/network/network-stack-process.ts <underlay address>
import {
  createGroup,
  createGuestImage,
  expectSucceeded,
  listInstances,
} from "../e2e/vm-group-lifecycle-support.ts";
import { startStack } from "../support/stack.ts";

const [underlay] = process.argv.slice(2);
if (!underlay) throw new Error("usage: network-stack-process.ts <underlay address>");

const SERVE = [
  "mkdir -p /www && echo hello-from-web >/www/index.html",
  "httpd -h /www -p 80 && guest-attribute net/serving yes",
].join("\n");

// The peer's address arrives as the metadata value `web`; the script asks for it and connects.
const CLIENT = [
  'web="$(wget -q -O - --header "Metadata-Flavor: Google" http://169.254.169.254/computeMetadata/v1/instance/attributes/web)"',
  'guest-attribute net/peer "$web"',
  "ok=failed",
  "for i in $(seq 1 30); do",
  `  if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$web" 80 | grep -q hello-from-web; then ok=ok; break; fi`,
  "  sleep 1",
  "done",
  "guest-attribute net/tcp $ok",
].join("\n");

const stack = await startStack({
  name: "netstack",
  regions: ["eu-west"],
  managerArgs: () => ["--guest-network-underlay", underlay],
});
const result: Record<string, unknown> = {};
try {
  const image = await createGuestImage(stack, "guest", "eu-west");
  const web = await createGroup(stack, {
    name: "web",
    image,
    region: "eu-west",
    size: 1,
    metadata: { "startup-script": SERVE },
  });
  await expectSucceeded(stack, web.operationId, 300_000);
  const client = await createGroup(stack, {
    name: "client",
    image,
    region: "eu-west",
    size: 1,
    metadata: { "startup-script": CLIENT },
    metadata_from: { web: { vm_group: web.groupId, instance: 0, attribute: "address" } },
  });
  await expectSucceeded(stack, client.operationId, 300_000);
  const deadline = Date.now() + 120_000;
  let clients = await listInstances(stack, client.groupId);
  while (clients[0]?.guest_attributes["net/tcp"] === undefined && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    clients = await listInstances(stack, client.groupId);
  }
  result.web = await listInstances(stack, web.groupId);
  result.client = clients;
  result.groups = [
    (await stack.call("GET", `/v1/vm-groups/${web.groupId}`, stack.projectToken)).body,
    (await stack.call("GET", `/v1/vm-groups/${client.groupId}`, stack.projectToken)).body,
  ];
} catch (error) {
  result.error = String(error);
  result.logs = stack.logs();
} finally {
  await stack.stop();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
