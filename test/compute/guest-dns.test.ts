// Guests' DNS: the messages, the per-instance listener of the metadata service (DNS over TCP, as
// a guest's resolver sends it through QEMU's guestfwd) and the manager's cache of the control
// plane's answers.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  answerMessage,
  buildResponse,
  DnsStreamFramer,
  frameMessage,
  parseQuery,
  RCODE,
} from "../../regional-manager/metadata/dns.ts";
import { type MetadataEndpoint, MetadataService } from "../../regional-manager/metadata/index.ts";
import { InternalNameCache } from "../../regional-manager/metadata/name-cache.ts";
import type { InternalNameAnswer } from "../../schemas/internal-names.ts";

const A = 1;
const AAAA = 28;

/** A stub resolver's query: one question, recursion desired. */
function query(
  name: string,
  type = A,
  id = 0x1234,
  extra: { qdcount?: number; flags?: number } = {},
): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(extra.flags ?? 0x0100, 2);
  header.writeUInt16BE(extra.qdcount ?? 1, 4);
  const labels = name
    .split(".")
    .filter(Boolean)
    .map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, "latin1")]));
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([header, ...labels, Buffer.from([0]), tail]);
}

interface Decoded {
  id: number;
  rcode: number;
  authoritative: boolean;
  recursionDesired: boolean;
  recursionAvailable: boolean;
  questions: number;
  answers: { type: number; ttl: number; address: string }[];
}

/** Decodes a response as a resolver reads it (the answers' owner names are pointers). */
function decode(message: Buffer): Decoded {
  const flags = message.readUInt16BE(2);
  let offset = 12;
  const questions = message.readUInt16BE(4);
  for (let q = 0; q < questions; q++) {
    while (message[offset] !== 0) offset += (message[offset] ?? 0) + 1;
    offset += 5;
  }
  const answers: Decoded["answers"] = [];
  for (let a = 0; a < message.readUInt16BE(6); a++) {
    expect(message.readUInt16BE(offset)).toBe(0xc00c);
    const type = message.readUInt16BE(offset + 2);
    const ttl = message.readUInt32BE(offset + 6);
    const length = message.readUInt16BE(offset + 10);
    answers.push({ type, ttl, address: [...message.subarray(offset + 12, offset + 12 + length)].join(".") });
    offset += 12 + length;
  }
  expect(offset).toBe(message.length);
  return {
    id: message.readUInt16BE(0),
    rcode: flags & 0x0f,
    authoritative: (flags & 0x0400) !== 0,
    recursionDesired: (flags & 0x0100) !== 0,
    recursionAvailable: (flags & 0x0080) !== 0,
    questions,
    answers,
  };
}

const ZONE = "acme.globalvm.internal";
const WEB = "web.us-east.acme.globalvm.internal";
const names: Record<string, InternalNameAnswer> = {
  [WEB]: { name: WEB, addresses: ["10.128.0.2", "10.128.0.3"] },
  [`web-0.${WEB}`]: { name: `web-0.${WEB}`, addresses: ["10.128.0.2"] },
};
const lookup = async (name: string) => names[name.toLowerCase()];

describe("DNS messages", () => {
  it("answers a name of the asker's project with its addresses, authoritative, without recursion", async () => {
    const answer = decode((await answerMessage(query(WEB), ZONE, lookup, 5)) as Buffer);
    expect(answer).toEqual({
      id: 0x1234,
      rcode: RCODE.noError,
      authoritative: true,
      recursionDesired: true,
      recursionAvailable: false,
      questions: 1,
      answers: [
        { type: A, ttl: 5, address: "10.128.0.2" },
        { type: A, ttl: 5, address: "10.128.0.3" },
      ],
    });
  });

  it("compares names as DNS does: any case, with or without the root's dot", async () => {
    const answer = decode(
      (await answerMessage(query(`WEB-0.${WEB.toUpperCase()}.`), ZONE, lookup, 5)) as Buffer,
    );
    expect(answer.answers.map((a) => a.address)).toEqual(["10.128.0.2"]);
  });

  it("refuses names outside the project's zone: the outside, another project, and everything without a zone", async () => {
    for (const name of [
      "example.com",
      "web.us-east.other.globalvm.internal",
      "globalvm.internal",
      "internal",
    ]) {
      const answer = decode((await answerMessage(query(name), ZONE, lookup, 5)) as Buffer);
      expect([name, answer.rcode, answer.answers]).toEqual([name, RCODE.refused, []]);
    }
    expect(decode((await answerMessage(query(WEB), undefined, lookup, 5)) as Buffer).rcode).toBe(
      RCODE.refused,
    );
  });

  it("says NXDOMAIN for a name of the zone that does not exist, and an empty answer for its other types", async () => {
    expect(decode((await answerMessage(query(`db.${ZONE}`), ZONE, lookup, 5)) as Buffer).rcode).toBe(
      RCODE.nxDomain,
    );
    const aaaa = decode((await answerMessage(query(WEB, AAAA), ZONE, lookup, 5)) as Buffer);
    expect([aaaa.rcode, aaaa.answers]).toEqual([RCODE.noError, []]);
  });

  it("says SERVFAIL when the names cannot be looked up now", async () => {
    const failing = async () => {
      throw new Error("control plane unreachable");
    };
    expect(decode((await answerMessage(query(WEB), ZONE, failing, 5)) as Buffer).rcode).toBe(RCODE.servFail);
  });

  it("answers malformed queries with FORMERR or NOTIMP, and ignores what is not a query", async () => {
    expect(
      decode((await answerMessage(query(WEB, A, 7, { qdcount: 2 }), ZONE, lookup, 5)) as Buffer).rcode,
    ).toBe(RCODE.formErr);
    // Opcode 2 (STATUS).
    expect(
      decode((await answerMessage(query(WEB, A, 7, { flags: 0x1000 }), ZONE, lookup, 5)) as Buffer).rcode,
    ).toBe(RCODE.notImp);
    expect(await answerMessage(Buffer.alloc(5), ZONE, lookup, 5)).toBeUndefined();
    const response = buildResponse(parseQuery(query(WEB)) as NonNullable<ReturnType<typeof parseQuery>>, 0);
    expect(await answerMessage(response, ZONE, lookup, 5)).toBeUndefined();
    // A name that runs past the message.
    const truncated = query(WEB).subarray(0, 20);
    expect(decode((await answerMessage(truncated, ZONE, lookup, 5)) as Buffer).rcode).toBe(RCODE.formErr);
  });

  it("frames TCP streams: messages split over reads, several in one read, none too large", () => {
    const framer = new DnsStreamFramer();
    const one = query(WEB);
    const two = query(`web-0.${WEB}`, AAAA);
    const stream = Buffer.concat([frameMessage(one), frameMessage(two)]);
    expect(framer.push(stream.subarray(0, 1))).toEqual([]);
    expect(framer.push(stream.subarray(1, 10))).toEqual([]);
    expect(framer.push(stream.subarray(10))).toEqual([one, two]);
    const large = Buffer.alloc(2);
    large.writeUInt16BE(4000, 0);
    expect(() => new DnsStreamFramer().push(large)).toThrow(/4000 bytes/);
  });
});

/** Sends framed queries on one connection and reads as many framed answers. */
async function ask(endpoint: MetadataEndpoint, queries: Buffer[]): Promise<Decoded[]> {
  const socket: Socket = endpoint.socket
    ? connect({ path: endpoint.socket })
    : connect({ host: endpoint.host as string, port: endpoint.port as number });
  const framer = new DnsStreamFramer(65_535);
  const answers: Decoded[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.on("error", reject);
    socket.on("data", (chunk: Buffer) => {
      for (const message of framer.push(chunk)) answers.push(decode(message));
      if (answers.length === queries.length) resolve();
    });
    socket.write(Buffer.concat(queries.map(frameMessage)));
  });
  socket.destroy();
  return answers;
}

describe("an instance's DNS listener", () => {
  const services: MetadataService[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(services.splice(0).map((service) => service.close()));
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  const identity = (instanceId: string, hostname?: string) => ({
    instanceId,
    name: "web-0",
    ...(hostname ? { hostname } : {}),
    vmGroup: "web",
    region: "us-east",
    datacenter: "us-east-a",
    image: "img_1",
  });

  it("answers A and AAAA on one connection, in order, looking names up as the asking instance", async () => {
    const asked: [string, string][] = [];
    const service = new MetadataService({
      lookupName: async (instanceId, name) => {
        asked.push([instanceId, name]);
        return lookup(name);
      },
    });
    services.push(service);
    await service.registerInstance(identity("ins_a", `web-0.${WEB}`), {});
    const endpoint = service.dnsEndpointOf("ins_a") as MetadataEndpoint;
    expect(endpoint.port).toBeGreaterThan(0);
    expect(endpoint.port).not.toBe(service.endpointOf("ins_a")?.port);
    const [a, aaaa, outside] = await ask(endpoint, [
      query(`web-0.${WEB}`, A, 1),
      query(`web-0.${WEB}`, AAAA, 2),
      query("example.com", A, 3),
    ]);
    expect([a?.id, a?.answers.map((r) => r.address)]).toEqual([1, ["10.128.0.2"]]);
    expect([aaaa?.id, aaaa?.rcode, aaaa?.answers]).toEqual([2, RCODE.noError, []]);
    expect([outside?.id, outside?.rcode]).toEqual([3, RCODE.refused]);
    // The outside was refused without asking anyone.
    expect(asked).toEqual([
      ["ins_a", `web-0.${WEB}`],
      ["ins_a", `web-0.${WEB}`],
    ]);
  });

  it("refuses everything for an instance without an internal name, and without a way to look names up", async () => {
    const service = new MetadataService({ lookupName: async (_, name) => lookup(name) });
    services.push(service);
    await service.registerInstance(identity("ins_b"), {});
    const [answer] = await ask(service.dnsEndpointOf("ins_b") as MetadataEndpoint, [query(WEB)]);
    expect(answer?.rcode).toBe(RCODE.refused);

    const without = new MetadataService();
    services.push(without);
    await without.registerInstance(identity("ins_c", `web-0.${WEB}`), {});
    const [refused] = await ask(without.dnsEndpointOf("ins_c") as MetadataEndpoint, [query(WEB)]);
    expect(refused?.rcode).toBe(RCODE.refused);
  });

  it("listens on a unix socket beside the metadata one, and closes it and its connections when unregistered", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gv-dns-"));
    dirs.push(dir);
    const service = new MetadataService({
      socketDir: { path: dir },
      lookupName: async (_, name) => lookup(name),
    });
    services.push(service);
    await service.registerInstance(identity("ins_d", `web-0.${WEB}`), {});
    const endpoint = service.dnsEndpointOf("ins_d") as MetadataEndpoint;
    expect(endpoint).toEqual({ socket: join(dir, "ins_d.dns.sock") });
    expect(statSync(join(dir, "ins_d.dns.sock")).mode & 0o777).toBe(0o660);
    const [answer] = await ask(endpoint, [query(WEB)]);
    expect(answer?.answers).toHaveLength(2);

    const idle = connect({ path: endpoint.socket as string });
    await new Promise((resolve) => idle.once("connect", resolve));
    const closed = new Promise((resolve) => idle.once("close", resolve));
    await service.unregisterInstance("ins_d");
    await closed;
    expect(service.dnsEndpointOf("ins_d")).toBeUndefined();
  });

  it("serves the internal name as instance/hostname, and the plain name without one", async () => {
    const service = new MetadataService();
    services.push(service);
    const named = await service.registerInstance(identity("ins_e", `web-0.${WEB}`), {});
    const plain = await service.registerInstance(identity("ins_f"), {});
    const hostname = async (endpoint: MetadataEndpoint) =>
      (
        await fetch(`http://${endpoint.host}:${endpoint.port}/computeMetadata/v1/instance/hostname`, {
          headers: { "Metadata-Flavor": "Google" },
        })
      ).text();
    expect(await hostname(named)).toBe(`web-0.${WEB}`);
    expect(await hostname(plain)).toBe("web-0");
  });
});

describe("the manager's cache of internal names", () => {
  it("asks the control plane once per name and asker while an answer is fresh, and again after", async () => {
    let now = 0;
    const asked: string[] = [];
    const cache = new InternalNameCache(
      async (instanceId, name) => {
        asked.push(`${instanceId} ${name}`);
        return names[name];
      },
      { ttlMs: 5000, now: () => now },
    );
    await Promise.all([cache.lookup("ins_a", WEB), cache.lookup("ins_a", `${WEB.toUpperCase()}.`)]);
    await cache.lookup("ins_b", WEB);
    now = 4999;
    expect(await cache.lookup("ins_a", WEB)).toEqual(names[WEB]);
    now = 5000;
    await cache.lookup("ins_a", WEB);
    expect(asked).toEqual([`ins_a ${WEB}`, `ins_b ${WEB}`, `ins_a ${WEB}`]);
  });

  it("keeps no failure, and at most its number of entries", async () => {
    let fail = true;
    let calls = 0;
    const cache = new InternalNameCache(
      async (_, name) => {
        calls++;
        if (fail) throw new Error("unreachable");
        return names[name];
      },
      { ttlMs: 5000, maxEntries: 2 },
    );
    await expect(cache.lookup("ins_a", WEB)).rejects.toThrow("unreachable");
    fail = false;
    expect(await cache.lookup("ins_a", WEB)).toEqual(names[WEB]);
    await cache.lookup("ins_a", "a.acme.globalvm.internal");
    await cache.lookup("ins_a", "b.acme.globalvm.internal");
    // WEB was the oldest of three: asked again.
    await cache.lookup("ins_a", WEB);
    expect(calls).toBe(5);
  });
});
