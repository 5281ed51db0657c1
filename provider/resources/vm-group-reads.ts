// Refreshes of many VM groups in few requests. Terraform refreshes each group with a
// ReadResource call of its own, ten at a time; answered with two GETs each, the control plane's
// one-by-one answers were most of a no-change plan.
//
// The first refresh in a provider process reads the whole project when it is small (one page of
// groups, one of instances): every later refresh in the process is answered from that. Terraform
// starts a provider process for each command and walk, so what it serves was read during the
// current command, never before it, and any write this process makes drops it. A bigger project
// is read by ID instead: refreshes that wait together go out together, one list of the groups
// and one of their instances (GET /v1/vm-groups?id=…, GET /v1/instances?vm_group=…).

import { type ApiClient, expectData } from "../../client/api.ts";
import { idPattern, MAX_LISTED_IDS } from "../../schemas/plain.ts";

const PAGE_SIZE = 200;

const groupsPage = (api: ApiClient, ids: string[] | undefined, page_token: string | null) =>
  api.GET("/v1/vm-groups", {
    params: {
      query: { ...(ids ? { id: ids } : {}), page_size: PAGE_SIZE, ...(page_token ? { page_token } : {}) },
    },
  });
const instancesPage = (api: ApiClient, ids: string[] | undefined, page_token: string | null) =>
  api.GET("/v1/instances", {
    params: {
      query: {
        ...(ids ? { vm_group: ids } : {}),
        page_size: PAGE_SIZE,
        ...(page_token ? { page_token } : {}),
      },
    },
  });
type Item<F extends (...args: never[]) => Promise<{ data?: { items: unknown[] } }>> = NonNullable<
  Awaited<ReturnType<F>>["data"]
>["items"][number];

export interface GroupRead {
  group: Item<typeof groupsPage>;
  /** Ordered by ID, as GET /v1/vm-groups/{id}/instances lists them. */
  instances: Item<typeof instancesPage>[];
}
type Reads = Map<string, GroupRead>;

interface Waiter {
  resolve: (read: GroupRead | null) => void;
  reject: (error: unknown) => void;
}

/**
 * Batches by ID in flight at once: while they are out, new reads queue and leave together when
 * one returns, so batches grow with Terraform's parallelism and no read waits on a timer.
 */
const BATCHES_IN_FLIGHT = 2;
const VM_GROUP_ID = idPattern("vmGroup");

export class VmGroupReads {
  readonly #api: ApiClient;
  /** The whole project as read by this process, or null when it is too big to read whole. */
  #project: Promise<Reads | null> | undefined;
  readonly #queued = new Map<string, Waiter[]>();
  #inFlight = 0;
  #scheduled = false;

  constructor(api: ApiClient) {
    this.#api = api;
  }

  /** The group and its instances, or null when the project has no such group. */
  read(id: string, signal?: AbortSignal): Promise<GroupRead | null> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      // The control plane refuses a list naming a malformed ID: it would fail the whole batch.
      if (!VM_GROUP_ID.test(id))
        return reject(new Error(`${JSON.stringify(id)} is not a VM group ID (vmg_…)`));
      signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      if (!this.#project) {
        const project = this.#readProject();
        this.#project = project;
        // A failed read is not kept: the next refresh asks again.
        project.catch(() => {
          if (this.#project === project) this.#project = undefined;
        });
      }
      this.#project.then((project) => {
        if (project) resolve(project.get(id) ?? null);
        else this.#enqueue(id, { resolve, reject });
      }, reject);
    });
  }

  /** This process changed something: later refreshes read again. */
  forget() {
    this.#project = undefined;
  }

  async #readProject(): Promise<Reads | null> {
    const [groups, instances] = await Promise.all([
      groupsPage(this.#api, undefined, null),
      instancesPage(this.#api, undefined, null),
    ]);
    const groupPage = expectData("Reading the VM groups", groups);
    const instancePage = expectData("Listing the VM groups' instances", instances);
    if (groupPage.next_page_token || instancePage.next_page_token) return null;
    return collect(groupPage.items, instancePage.items);
  }

  #enqueue(id: string, waiter: Waiter) {
    this.#queued.set(id, [...(this.#queued.get(id) ?? []), waiter]);
    if (this.#scheduled) return;
    // Reads that arrive in the same turn of the event loop (Terraform's concurrent calls come
    // in one burst of HTTP/2 frames) join one batch.
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#dispatch();
    });
  }

  #dispatch() {
    while (this.#inFlight < BATCHES_IN_FLIGHT && this.#queued.size > 0) {
      const batch = new Map([...this.#queued].slice(0, MAX_LISTED_IDS));
      for (const id of batch.keys()) this.#queued.delete(id);
      this.#inFlight++;
      this.#readByIds([...batch.keys()])
        .then(
          (reads) => {
            for (const [id, waiters] of batch) for (const w of waiters) w.resolve(reads.get(id) ?? null);
          },
          (error) => {
            for (const waiters of batch.values()) for (const w of waiters) w.reject(error);
          },
        )
        .finally(() => {
          this.#inFlight--;
          this.#dispatch();
        });
    }
  }

  async #readByIds(ids: string[]): Promise<Reads> {
    const [groups, instances] = await Promise.all([
      all("Reading the VM groups", (token) => groupsPage(this.#api, ids, token)),
      all("Listing the VM groups' instances", (token) => instancesPage(this.#api, ids, token)),
    ]);
    return collect(groups, instances);
  }
}

function collect(groups: GroupRead["group"][], instances: GroupRead["instances"]): Reads {
  const reads: Reads = new Map();
  for (const group of groups) reads.set(group.id, { group, instances: [] });
  for (const instance of instances) reads.get(instance.vm_group_id)?.instances.push(instance);
  return reads;
}

interface Page<T> {
  items: T[];
  next_page_token: string | null;
}

/** Every item of a list, page after page. */
async function all<T>(
  action: string,
  page: (token: string | null) => Promise<{ data?: Page<T>; error?: unknown; response: Response }>,
): Promise<T[]> {
  const items: T[] = [];
  let token: string | null = null;
  do {
    const data: Page<T> = expectData(action, await page(token));
    items.push(...data.items);
    token = data.next_page_token;
  } while (token);
  return items;
}
