// The metadata service: one HTTP listener per instance on a loopback port. A compute driver
// forwards the guest's 169.254.169.254:80 to that port (QEMU: guestfwd), so the listener that
// receives a request *is* the identity of the asking instance; no guest can name another one,
// and nothing but the loopback interface is listened on. Guests whose QEMU runs in another
// network namespace (a datacenter host of its own) cannot reach this loopback: for them each
// listener is a unix socket in a directory instead, which namespaces do not separate. Each
// instance also has a DNS listener of its own (the guest's 169.254.169.254:53), for the same
// reason: the listener a query arrives on says which project's names the guest may ask about.
import { EventEmitter } from "node:events";
import { chmodSync, chownSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Server as NetServer } from "node:net";
import { join } from "node:path";
import {
  INTERNAL_NAME_TTL_SECONDS,
  type InternalNameAnswer,
  parseInternalName,
  projectZone,
} from "../../schemas/internal-names.ts";
import { answerMessage } from "./dns.ts";
import { createDnsServer } from "./dns-listener.ts";
import {
  buildInstanceDocument,
  etagOf,
  type GuestAttributes,
  type InstanceIdentity,
  type MetadataTree,
  metadataPathSegments,
  parseGuestAttributePath,
  renderNode,
  resolveNode,
} from "./document.ts";
import { answersImmediately, baselineEtag, parseMetadataQuery, type WaitOptions } from "./request.ts";

/** Where an instance's listener is: a loopback port, or a unix socket (MetadataServiceOptions.socketDir). */
export type MetadataEndpoint =
  | { host: string; port: number; socket?: never }
  | { socket: string; host?: never; port?: never };

export interface GuestAttributeWrite {
  instanceId: string;
  /** "namespace/key", e.g. "globalvm/ready". */
  path: string;
  value: string;
}

/** What one instance's guest may store (DEFAULT_GUEST_ATTRIBUTE_LIMITS). */
export interface GuestAttributeLimits {
  /** Most guest attributes one instance may hold. */
  maxGuestAttributes: number;
  /** Most bytes (paths and values) one instance's guest attributes may hold together. */
  maxGuestAttributesTotalBytes: number;
}

export interface MetadataServiceOptions extends Partial<GuestAttributeLimits> {
  /** Loopback address the per-instance listeners bind to. */
  host?: string;
  /** Longest a wait_for_change request is held (and the wait when it gives no timeout_sec). */
  maxWaitMs?: number;
  /** Largest guest attribute value accepted, in bytes. */
  maxGuestAttributeBytes?: number;
  /**
   * Listen on unix sockets `<dir>/<instanceId>.sock` instead of loopback ports. The directory
   * must exist and be reachable by QEMU's user; each socket is made connectable by `group`
   * (QEMU's) and nobody else.
   */
  socketDir?: { path: string; group?: number };
  /**
   * Looks up an internal name for an instance's guest (undefined: no such name; throws: cannot
   * tell now). Without it, guests' DNS queries are all refused.
   */
  lookupName?: (instanceId: string, name: string) => Promise<InternalNameAnswer | undefined>;
}

/*
 * Defaults: a value of 64 KiB, 128 attributes, 256 KiB in all. Each write is kept in memory,
 * on disk and sent to the control plane with every report of the instance, so a guest must not
 * be able to grow them without bound (GCE also caps guest attributes).
 */
export const DEFAULT_GUEST_ATTRIBUTE_LIMITS = {
  maxGuestAttributeBytes: 64 * 1024,
  maxGuestAttributes: 128,
  maxGuestAttributesTotalBytes: 256 * 1024,
} as const;

/** Why writing `value` at `path` would take an instance's guest attributes over a limit, if it would. */
export function guestAttributeRefusal(
  current: GuestAttributes,
  path: string,
  value: string,
  limits: GuestAttributeLimits,
): string | undefined {
  const next = { ...current, [path]: value };
  const count = Object.keys(next).length;
  if (count > limits.maxGuestAttributes) {
    return `An instance holds at most ${limits.maxGuestAttributes} guest attributes; overwrite one of them instead.`;
  }
  let bytes = 0;
  for (const [key, text] of Object.entries(next)) bytes += Buffer.byteLength(key) + Buffer.byteLength(text);
  if (bytes > limits.maxGuestAttributesTotalBytes) {
    return `An instance's guest attributes hold at most ${limits.maxGuestAttributesTotalBytes} bytes in all (this write makes ${bytes}).`;
  }
  return undefined;
}

export interface RegisterInstanceOptions {
  /** Port to listen on (a restarted manager passes the port its guests already forward to); 0 picks one. */
  port?: number;
  /** The same for the DNS listener. */
  dnsPort?: number;
  /** Guest attributes already known (restored after a manager restart). */
  guestAttributes?: GuestAttributes;
}

interface Waiter {
  segments: string[];
  baseline: string;
  answer: () => void;
}

interface RegisteredInstance {
  identity: InstanceIdentity;
  attributes: Record<string, string>;
  guestAttributes: GuestAttributes;
  document: MetadataTree;
  server: Server;
  endpoint: MetadataEndpoint;
  dns: NetServer;
  dnsEndpoint: MetadataEndpoint;
  waiters: Set<Waiter>;
}

export type MetadataServiceEvents = { "guest-attribute": [GuestAttributeWrite] };

export class MetadataError extends Error {
  override name = "MetadataError";
}

const GUEST_ATTRIBUTE_ROOT = ["instance", "guest-attributes"];

export class MetadataService extends EventEmitter<MetadataServiceEvents> {
  readonly #host: string;
  readonly #socketDir: MetadataServiceOptions["socketDir"];
  readonly #maxWaitMs: number;
  readonly #maxGuestAttributeBytes: number;
  readonly #guestAttributeLimits: GuestAttributeLimits;
  readonly #instances = new Map<string, RegisteredInstance>();
  readonly #lookupName: MetadataServiceOptions["lookupName"];

  constructor(options: MetadataServiceOptions = {}) {
    super();
    this.#host = options.host ?? "127.0.0.1";
    this.#socketDir = options.socketDir;
    this.#lookupName = options.lookupName;
    this.#maxWaitMs = options.maxWaitMs ?? 300_000;
    this.#maxGuestAttributeBytes =
      options.maxGuestAttributeBytes ?? DEFAULT_GUEST_ATTRIBUTE_LIMITS.maxGuestAttributeBytes;
    this.#guestAttributeLimits = {
      maxGuestAttributes: options.maxGuestAttributes ?? DEFAULT_GUEST_ATTRIBUTE_LIMITS.maxGuestAttributes,
      maxGuestAttributesTotalBytes:
        options.maxGuestAttributesTotalBytes ?? DEFAULT_GUEST_ATTRIBUTE_LIMITS.maxGuestAttributesTotalBytes,
    };
  }

  /** Starts serving an instance's metadata and DNS; resolves to the endpoint its metadata traffic must reach. */
  async registerInstance(
    identity: InstanceIdentity,
    attributes: Record<string, string>,
    options: RegisterInstanceOptions = {},
  ): Promise<MetadataEndpoint> {
    const { instanceId } = identity;
    if (this.#instances.has(instanceId))
      throw new MetadataError(`instance ${instanceId} is already registered`);
    const guestAttributes = { ...options.guestAttributes };
    const server = createServer({ keepAliveTimeout: 1_000 });
    const dns = this.#dnsServer(identity);
    const instance: RegisteredInstance = {
      identity: { ...identity },
      attributes: { ...attributes },
      guestAttributes,
      document: buildInstanceDocument(identity, attributes, guestAttributes),
      server,
      endpoint: { host: this.#host, port: 0 },
      dns,
      dnsEndpoint: { host: this.#host, port: 0 },
      waiters: new Set(),
    };
    server.on("request", (request, response) => this.#handle(instance, request, response));
    try {
      instance.endpoint = await this.#listen(server, `${instanceId}.sock`, options.port, instanceId);
      instance.dnsEndpoint = await this.#listen(dns, `${instanceId}.dns.sock`, options.dnsPort, instanceId);
    } catch (error) {
      await Promise.all([closeServer(server), closeNetServer(dns)]);
      throw error;
    }
    this.#instances.set(instanceId, instance);
    return { ...instance.endpoint };
  }

  /** Listens on `<socketDir>/<file>`, or on a loopback port. */
  async #listen(
    server: NetServer,
    file: string,
    port: number | undefined,
    instanceId: string,
  ): Promise<MetadataEndpoint> {
    const socketDir = this.#socketDir;
    const socket = socketDir ? join(socketDir.path, file) : undefined;
    // A socket file left by a manager that was killed would refuse the bind; it is ours.
    if (socket) rmSync(socket, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error) =>
        reject(
          new MetadataError(
            `cannot listen for ${instanceId} on ${socket ?? `port ${port ?? 0}`}: ${error.message}`,
          ),
        ),
      );
      if (socket) server.listen({ path: socket }, () => resolve());
      else server.listen({ host: this.#host, port: port ?? 0 }, () => resolve());
    });
    if (!socket) return { host: this.#host, port: (server.address() as AddressInfo).port };
    chmodSync(socket, 0o660);
    if (socketDir?.group !== undefined) chownSync(socket, process.getuid?.() ?? 0, socketDir.group);
    return { socket };
  }

  /** The instance's DNS: names of its own project only, and only when it has an internal name. */
  #dnsServer(identity: InstanceIdentity): NetServer {
    const internal = identity.hostname === undefined ? undefined : parseInternalName(identity.hostname);
    const zone = internal && projectZone(internal.project);
    const lookupName = this.#lookupName;
    const lookup = lookupName
      ? (name: string) => lookupName(identity.instanceId, name)
      : async () => undefined;
    return createDnsServer((message) =>
      answerMessage(message, lookupName ? zone : undefined, lookup, INTERNAL_NAME_TTL_SECONDS),
    );
  }

  endpointOf(instanceId: string): MetadataEndpoint | undefined {
    const instance = this.#instances.get(instanceId);
    return instance && { ...instance.endpoint };
  }

  /** Where the instance's guest DNS queries must be relayed. */
  dnsEndpointOf(instanceId: string): MetadataEndpoint | undefined {
    const instance = this.#instances.get(instanceId);
    return instance && { ...instance.dnsEndpoint };
  }

  has(instanceId: string): boolean {
    return this.#instances.has(instanceId);
  }

  /** Replaces the instance's attributes (the VM group's metadata key/values). */
  setAttributes(instanceId: string, attributes: Record<string, string>): void {
    const instance = this.#require(instanceId);
    instance.attributes = { ...attributes };
    this.#rebuild(instance);
  }

  /** Sets some attributes and deletes those mapped to null, leaving the others as they are. */
  updateAttributes(instanceId: string, changes: Record<string, string | null>): void {
    const instance = this.#require(instanceId);
    const attributes = { ...instance.attributes };
    for (const [key, value] of Object.entries(changes)) {
      if (value === null) delete attributes[key];
      else attributes[key] = value;
    }
    instance.attributes = attributes;
    this.#rebuild(instance);
  }

  attributesOf(instanceId: string): Record<string, string> {
    return { ...this.#require(instanceId).attributes };
  }

  guestAttributesOf(instanceId: string): GuestAttributes {
    return { ...this.#require(instanceId).guestAttributes };
  }

  /** Long-polls (wait_for_change) held open now, over every instance: a gauge's figure. */
  waitingLongPolls(): number {
    let waiting = 0;
    for (const instance of this.#instances.values()) waiting += instance.waiters.size;
    return waiting;
  }

  /** Stops serving the instance: its listener closes and pending long-polls end. */
  async unregisterInstance(instanceId: string): Promise<void> {
    const instance = this.#instances.get(instanceId);
    if (!instance) return;
    this.#instances.delete(instanceId);
    await Promise.all([closeServer(instance.server), closeNetServer(instance.dns)]);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#instances.keys()].map((id) => this.unregisterInstance(id)));
  }

  #require(instanceId: string): RegisteredInstance {
    const instance = this.#instances.get(instanceId);
    if (!instance) throw new MetadataError(`unknown instance ${instanceId}`);
    return instance;
  }

  #rebuild(instance: RegisteredInstance): void {
    instance.document = buildInstanceDocument(
      instance.identity,
      instance.attributes,
      instance.guestAttributes,
    );
    for (const waiter of instance.waiters) {
      if (etagOf(resolveNode(instance.document, waiter.segments)) !== waiter.baseline) waiter.answer();
    }
  }

  #handle(instance: RegisteredInstance, request: IncomingMessage, response: ServerResponse): void {
    response.setHeader("Metadata-Flavor", "Google");
    response.setHeader("Server", "globalvm-metadata");
    // As on GCE: only requests that say they want metadata, and never ones relayed by a proxy.
    if (request.headers["metadata-flavor"] !== "Google" || request.headers["x-forwarded-for"] !== undefined) {
      sendText(response, 403, "Missing Metadata-Flavor:Google header.\n");
      request.resume();
      return;
    }
    const url = new URL(request.url ?? "/", "http://169.254.169.254");
    const located = metadataPathSegments(url.pathname);
    if (!located) {
      sendText(response, 404, "Not found.\n");
      request.resume();
      return;
    }
    if (request.method === "GET" || request.method === "HEAD") {
      request.resume();
      this.#get(instance, located.segments, url.searchParams, request, response);
    } else if (request.method === "PUT") {
      this.#putGuestAttribute(instance, located.segments, request, response);
    } else {
      response.setHeader("Allow", "GET, HEAD, PUT");
      sendText(response, 405, "Method not allowed.\n");
      request.resume();
    }
  }

  #get(
    instance: RegisteredInstance,
    segments: string[],
    params: URLSearchParams,
    request: IncomingMessage,
    response: ServerResponse,
  ): void {
    const query = parseMetadataQuery(params, this.#maxWaitMs);
    if (!query.ok) {
      sendText(response, 400, `${query.error}\n`);
      return;
    }
    const answer = () => {
      const node = resolveNode(instance.document, segments);
      if (node === undefined) {
        sendText(response, 404, "Not found.\n");
        return;
      }
      const rendered = renderNode(node, query.value.render);
      response.setHeader("ETag", etagOf(node));
      response.setHeader("Content-Type", rendered.contentType);
      response.statusCode = 200;
      response.end(request.method === "HEAD" ? undefined : rendered.body);
    };
    const currentEtag = etagOf(resolveNode(instance.document, segments));
    if (answersImmediately(query.value.wait, currentEtag)) {
      answer();
      return;
    }
    this.#wait(instance, segments, query.value.wait, currentEtag, request, answer);
  }

  #wait(
    instance: RegisteredInstance,
    segments: string[],
    wait: WaitOptions,
    currentEtag: string,
    request: IncomingMessage,
    answer: () => void,
  ): void {
    const waiter: Waiter = {
      segments,
      baseline: baselineEtag(wait, currentEtag),
      answer: () => {
        finish();
        answer();
      },
    };
    const timer = setTimeout(waiter.answer, wait.timeoutMs);
    // A client that hangs up stops being waited for; the listener closing ends the wait too.
    const onClose = () => finish();
    const finish = () => {
      clearTimeout(timer);
      instance.waiters.delete(waiter);
      request.socket.off("close", onClose);
    };
    request.socket.on("close", onClose);
    instance.waiters.add(waiter);
  }

  #putGuestAttribute(
    instance: RegisteredInstance,
    segments: string[],
    request: IncomingMessage,
    response: ServerResponse,
  ): void {
    const isGuestAttribute =
      segments.length === GUEST_ATTRIBUTE_ROOT.length + 2 &&
      GUEST_ATTRIBUTE_ROOT.every((segment, index) => segments[index] === segment);
    const path = segments.slice(GUEST_ATTRIBUTE_ROOT.length).join("/");
    if (!isGuestAttribute || !parseGuestAttributePath(path)) {
      sendText(response, 405, "Only instance/guest-attributes/<namespace>/<key> can be written.\n");
      request.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > this.#maxGuestAttributeBytes) tooLarge = true;
      else chunks.push(chunk);
    });
    request.on("end", () => {
      if (tooLarge) {
        sendText(
          response,
          413,
          `Guest attribute values are limited to ${this.#maxGuestAttributeBytes} bytes.\n`,
        );
        return;
      }
      if (this.#instances.get(instance.identity.instanceId) !== instance) {
        sendText(response, 404, "Not found.\n");
        return;
      }
      const value = Buffer.concat(chunks).toString("utf8");
      const refusal = guestAttributeRefusal(
        instance.guestAttributes,
        path,
        value,
        this.#guestAttributeLimits,
      );
      if (refusal) {
        sendText(response, 413, `${refusal}\n`);
        return;
      }
      instance.guestAttributes = { ...instance.guestAttributes, [path]: value };
      this.#rebuild(instance);
      sendText(response, 200, "");
      this.emit("guest-attribute", { instanceId: instance.identity.instanceId, path, value });
    });
  }
}

function sendText(response: ServerResponse, status: number, body: string): void {
  response.statusCode = status;
  response.setHeader("Content-Type", "text/plain; charset=utf-8");
  response.end(body);
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Held long-polls would keep close() waiting for their timeout.
    server.closeAllConnections();
  });
}

function closeNetServer(server: NetServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
  });
}
