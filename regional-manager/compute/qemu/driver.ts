// The qemu driver: one qemu-system-x86_64 process per instance, controlled through QMP on a unix
// socket, booting a qcow2 overlay over the stored image, its serial console captured to a
// bounded log, and its metadata traffic relayed to the instance's own metadata listener.
//
// QEMU opens no file by name: the manager opens the stored image (read-only) and the overlay,
// binds the QMP and console sockets, and QEMU inherits the descriptors (command-line.ts). It
// runs under a seccomp sandbox and, when the manager is root, as an unprivileged user
// (`qemuUser`, default "nobody"; see user.ts). A stored image's header may name other files:
// the disk chain is given to QEMU explicitly, so none of them is ever opened.
//
// Everything an instance needs to be taken over again lives in <dataDir>/instances/<id>/:
//   instance.json  the record (spec, state, pid, metadata port, guest attributes)
//   overlay.qcow2  the copy-on-write disk
//   qmp.sock       QMP;  console.sock  the serial console;  console.log  its bounded copy
//   qemu.log       QEMU's own stderr
// QEMU runs in its own session, so it outlives the manager; reattach() finds it by pid and
// checks it is the same process by its command line.
import { type ChildProcess, execFile, type StdioOptions, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { open } from "node:fs/promises";
import type { Socket } from "node:net";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { subnetMask } from "../../../schemas/ipv4.ts";
import type { GuestAttributeWrite, MetadataEndpoint } from "../../metadata/index.ts";
import { deviceName, guestMac } from "../../network/spec.ts";
import { inspectImageFile } from "../../store/format-inspector.ts";
import {
  type Accelerator,
  type AcceleratorChoice,
  type ProbeGuest,
  probeAccelerator,
} from "../accelerator.ts";
import { BoundedConsoleLog, LineSplitter } from "../console-log.ts";
import { classifyVmEnd } from "../exit.ts";
import {
  DeferredRecordWrites,
  type InstanceRecord,
  readInstanceRecord,
  writeInstanceRecord,
} from "../instance-record.ts";
import { QmpClient } from "../qmp.ts";
import {
  type ComputeDriver,
  type ComputeDriverEvents,
  ComputeError,
  CREATED_REASON,
  type DriverOptions,
  type InstanceSpec,
  type InstanceState,
  type InstanceStatus,
} from "../types.ts";
import { connectUnixSocket, type ListeningUnixSocket, listenUnixSocket } from "../unix-socket.ts";
import { checkMemoryAvailable, validateInstanceId, validateInstanceSpec } from "../validation.ts";
import { buildOverlayArgs, buildQemuArgs, CHILD_FDS, qemuCommand, type RelayTarget } from "./command-line.ts";
import { instanceProcesses, isInstanceProcess, isProcessRunning } from "./process.ts";
import { ensureTunUsableByAll } from "./tun.ts";
import { DEFAULT_QEMU_USER, qemuIdentity } from "./user.ts";

const execFileAsync = promisify(execFile);

export interface QemuDriverOptions extends DriverOptions {
  qemuBinary?: string;
  qemuImgBinary?: string;
  /** Relays a guest connection to the metadata listener: argv prefix, host and port are appended. */
  relayCommand?: readonly string[];
  /** "auto" probes (see accelerator.ts); a fixed choice skips the probe. */
  accelerator?: Accelerator | "auto";
  /** The guest booted by the KVM probe; without one, "auto" means TCG. */
  probeGuest?: ProbeGuest;
  probeCacheFile?: string;
  /** Bytes of serial console kept per instance (in memory, and at most twice that on disk). */
  consoleLimitBytes?: number;
  /** Lines of console put in a failed state report. */
  consoleTailLines?: number;
  /** Bound on each step of a start (QMP socket appearing, QMP replies). */
  startTimeoutMs?: number;
  /**
   * The user QEMU runs as when the manager runs as root (default "nobody"); "root" keeps root.
   * It needs no access to the data dir: every file QEMU uses is an inherited descriptor.
   */
  qemuUser?: string;
  /**
   * A named network namespace (`ip netns`) QEMU runs in: the datacenter host whose bridges and
   * taps its guests' network NICs join. QEMU enters it through nsenter, then drops to its user.
   * The metadata service must then listen on unix sockets (its loopback is not QEMU's).
   */
  netns?: string;
}

/** "globalvm/ready" with this value (or any value but "false") means the guest is ready. */
export const READY_ATTRIBUTE = "globalvm/ready";

interface RunningVm {
  pid: number;
  /** Set when this manager spawned QEMU; a reattached QEMU is watched by polling its pid. */
  child: ChildProcess | undefined;
  qmp: QmpClient | undefined;
  serial: Socket | undefined;
  serialClosed: Promise<void>;
  stopRequested: boolean;
  shutdownReason: string | undefined;
  panicked: boolean;
  ended: Promise<void>;
  pollTimer: NodeJS.Timeout | undefined;
}

interface ManagedInstance {
  dir: string;
  record: InstanceRecord;
  console: BoundedConsoleLog;
  lines: LineSplitter;
  vm: RunningVm | undefined;
}

const ACTIVE_STATES: readonly InstanceState[] = ["starting", "running", "ready"];
// Longest path of a unix socket (sun_path is 108 bytes with its terminating NUL).
const MAX_SOCKET_PATH = 107;

export class QemuDriver extends EventEmitter<ComputeDriverEvents> implements ComputeDriver {
  readonly kind = "qemu";
  readonly #options: QemuDriverOptions;
  readonly #instancesDir: string;
  readonly #instances = new Map<string, ManagedInstance>();
  readonly #onGuestAttribute = (write: GuestAttributeWrite) => this.#guestAttributeWritten(write);
  readonly #deferredWrites = new DeferredRecordWrites();
  #accelerator: Promise<AcceleratorChoice> | undefined;
  #detached = false;

  constructor(options: QemuDriverOptions) {
    super();
    this.#options = options;
    this.#instancesDir = join(resolve(options.dataDir), "instances");
    // A QEMU user that does not exist is a configuration error: said at start, not at each boot.
    qemuIdentity(options.qemuUser ?? DEFAULT_QEMU_USER, "tcg");
    // Created here so that create() can claim an instance directory with a non-recursive mkdir.
    mkdirSync(this.#instancesDir, { recursive: true });
    options.metadata.on("guest-attribute", this.#onGuestAttribute);
  }

  /** The accelerator instances are started with, probed once per driver. */
  accelerator(): Promise<AcceleratorChoice> {
    if (!this.#accelerator) {
      const fixed = this.#options.accelerator;
      this.#accelerator =
        fixed && fixed !== "auto"
          ? Promise.resolve({ accelerator: fixed, reason: "chosen by configuration" })
          : probeAccelerator({
              qemuBinary: this.#qemuBinary,
              ...(this.#options.probeGuest ? { probeGuest: this.#options.probeGuest } : {}),
              ...(this.#options.probeCacheFile ? { cacheFile: this.#options.probeCacheFile } : {}),
            });
    }
    return this.#accelerator;
  }

  async create(spec: InstanceSpec): Promise<InstanceStatus> {
    validateInstanceSpec(spec, this.#options.capacity);
    const dir = join(this.#instancesDir, spec.instanceId);
    if (Buffer.byteLength(join(dir, "console.sock")) > MAX_SOCKET_PATH) {
      throw new ComputeError(
        "invalid-argument",
        `instance ${spec.instanceId}: its socket paths under dataDir ${this.#options.dataDir} would exceed ${MAX_SOCKET_PATH} bytes; use a shorter dataDir`,
        "instanceId",
      );
    }
    if (this.#instances.has(spec.instanceId) || existsSync(dir)) {
      throw new ComputeError(
        "failed-precondition",
        `instance ${spec.instanceId} already exists`,
        "instanceId",
      );
    }
    let virtualSize: number;
    try {
      if (!statSync(spec.image.path).isFile()) throw new Error("not a regular file");
      virtualSize = await inspectStoredImage(spec.image);
    } catch (error) {
      throw new ComputeError(
        "invalid-argument",
        `image.path ${spec.image.path} is not a readable image file: ${(error as Error).message}`,
        "image.path",
      );
    }
    try {
      // Not recursive: creating the directory is what claims the ID against a concurrent create.
      mkdirSync(dir);
    } catch (error) {
      throw new ComputeError(
        "failed-precondition",
        `instance ${spec.instanceId} already exists (${(error as Error).message})`,
        "instanceId",
      );
    }
    try {
      await execFileAsync(
        this.#qemuImgBinary,
        buildOverlayArgs(spec.image.path, spec.image.format, virtualSize, join(dir, "overlay.qcow2")),
        {
          timeout: 30_000,
        },
      );
      const endpoint = await this.#options.metadata.registerInstance(identityOf(spec), spec.metadata);
      const record: InstanceRecord = {
        spec: structuredClone(spec),
        state: "stopped",
        reason: CREATED_REASON,
        // A unix socket's path follows from the instance's ID: no port to keep.
        metadataPort: endpoint.port ?? 0,
        dnsPort: this.#options.metadata.dnsEndpointOf(spec.instanceId)?.port ?? 0,
        guestAttributes: {},
      };
      writeInstanceRecord(dir, record);
      const instance = this.#manage(dir, record);
      this.#emitState(instance, undefined);
      return this.status(spec.instanceId);
    } catch (error) {
      await this.#options.metadata.unregisterInstance(spec.instanceId);
      rmSync(dir, { recursive: true, force: true });
      if (error instanceof ComputeError) throw error;
      throw new ComputeError(
        "internal",
        `cannot create instance ${spec.instanceId}: ${(error as Error).message}`,
      );
    }
  }

  async start(instanceId: string): Promise<InstanceStatus> {
    const instance = this.#require(instanceId);
    if (ACTIVE_STATES.includes(instance.record.state)) {
      throw new ComputeError(
        "failed-precondition",
        `instance ${instanceId} is already ${instance.record.state}`,
      );
    }
    const startedMb = [...this.#instances.values()]
      .filter((other) => ACTIVE_STATES.includes(other.record.state))
      .reduce((sum, other) => sum + other.record.spec.memoryMb, 0);
    checkMemoryAvailable(instance.record.spec.memoryMb, startedMb, this.#options.capacity);

    this.#setState(instance, "starting", {});
    try {
      const { accelerator } = await this.accelerator();
      instance.record.accelerator = accelerator;
      await this.#launch(instance, accelerator);
    } catch (error) {
      const vm = instance.vm;
      if (vm) {
        vm.stopRequested = true;
        killQuietly(vm.pid);
        await withTimeout(vm.ended, 5_000);
      }
      const reason = `start failed: ${(error as Error).message}`;
      this.#setState(instance, "failed", { reason, consoleTail: this.#failureTail(instance) });
      throw new ComputeError("internal", `instance ${instanceId}: ${reason}`);
    }
    return this.status(instanceId);
  }

  async stop(instanceId: string, options: { graceMs?: number } = {}): Promise<InstanceStatus> {
    const instance = this.#require(instanceId);
    const vm = instance.vm;
    if (vm) {
      vm.stopRequested = true;
      const graceMs = options.graceMs ?? 0;
      if (graceMs > 0 && vm.qmp && !vm.qmp.closed) {
        await vm.qmp.execute("system_powerdown").catch(() => undefined);
        await withTimeout(vm.ended, graceMs);
      }
      if (instance.vm === vm) {
        if (vm.qmp && !vm.qmp.closed) await vm.qmp.execute("quit", undefined, 5_000).catch(() => undefined);
        if (!(await withTimeout(vm.ended, 5_000))) {
          killQuietly(vm.pid);
          if (!(await withTimeout(vm.ended, 5_000))) {
            throw new ComputeError(
              "internal",
              `QEMU of ${instanceId} (pid ${vm.pid}) did not end after SIGKILL`,
            );
          }
        }
      }
    } else if (instance.record.state !== "stopped" && instance.record.state !== "failed") {
      this.#setState(instance, "stopped", { reason: "stopped by the manager" });
    }
    return this.status(instanceId);
  }

  async delete(instanceId: string): Promise<void> {
    validateInstanceId(instanceId);
    const instance = this.#require(instanceId);
    await this.stop(instanceId);
    await this.#options.metadata.unregisterInstance(instanceId);
    this.#instances.delete(instanceId);
    this.#deferredWrites.cancel(instanceId);
    rmSync(instance.dir, { recursive: true, force: true });
  }

  status(instanceId: string): InstanceStatus {
    const instance = this.#require(instanceId);
    const { record } = instance;
    return {
      instanceId,
      state: record.state,
      ...(record.reason !== undefined ? { reason: record.reason } : {}),
      ...(record.consoleTail !== undefined ? { consoleTail: record.consoleTail } : {}),
      guestAttributes: { ...record.guestAttributes },
      ...(instance.vm ? { pid: instance.vm.pid } : {}),
      ...(record.accelerator !== undefined ? { accelerator: record.accelerator } : {}),
      spec: structuredClone(record.spec),
    };
  }

  list(): InstanceStatus[] {
    return [...this.#instances.keys()].map((id) => this.status(id));
  }

  consoleLog(instanceId: string, options: { tailBytes?: number } = {}): string {
    return this.#require(instanceId).console.tail(options.tailBytes);
  }

  async setMetadata(instanceId: string, metadata: Record<string, string>): Promise<void> {
    const instance = this.#require(instanceId);
    validateInstanceSpec({ ...instance.record.spec, metadata }, this.#options.capacity);
    instance.record.spec.metadata = { ...metadata };
    writeInstanceRecord(instance.dir, instance.record);
    this.#options.metadata.setAttributes(instanceId, metadata);
  }

  async reattach(): Promise<InstanceStatus[]> {
    this.#detached = false;
    const found: InstanceStatus[] = [];
    const interrupted: string[] = [];
    for (const entry of readdirSync(this.#instancesDir, { withFileTypes: true })) {
      if (!entry.isDirectory() || this.#instances.has(entry.name)) continue;
      const dir = join(this.#instancesDir, entry.name);
      let record: InstanceRecord;
      try {
        record = readInstanceRecord(dir);
      } catch {
        // A directory without a complete record is a create that crashed half-way: nothing
        // ever ran from it.
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      await this.#options.metadata.registerInstance(identityOf(record.spec), record.spec.metadata, {
        port: record.metadataPort,
        ...(record.dnsPort !== undefined ? { dnsPort: record.dnsPort } : {}),
        guestAttributes: record.guestAttributes,
      });
      // A record from before guests had DNS: its next start forwards to the port just taken.
      if (record.dnsPort === undefined) {
        record.dnsPort = this.#options.metadata.dnsEndpointOf(record.spec.instanceId)?.port ?? 0;
        writeInstanceRecord(dir, record);
      }
      const instance = this.#manage(dir, record);
      const pid = record.pid;
      if (pid !== undefined && isInstanceProcess(pid, dir)) {
        try {
          await this.#attach(instance, pid, undefined);
          const status = (await instance.vm?.qmp?.execute("query-status")) as { status?: string } | undefined;
          // A start interrupted before "cont" leaves the VM paused at its first instruction.
          if (status?.status === "prelaunch") await instance.vm?.qmp?.execute("cont");
          if (record.state === "starting" || record.state === "stopped" || record.state === "failed") {
            this.#setState(instance, "running", {});
          }
        } catch (error) {
          killQuietly(pid);
          this.#setState(instance, "failed", {
            reason: `cannot take over QEMU (pid ${pid}) after a manager restart: ${(error as Error).message}`,
            consoleTail: this.#failureTail(instance),
          });
        }
      } else if (record.state === "starting") {
        // The manager died while starting this VM: before QEMU was up, or before its pid was
        // recorded. The guest never ran, so the start is simply made again, after any QEMU
        // spawned without a recorded pid is stopped (it would be a second VM).
        for (const stray of instanceProcesses(dir)) killQuietly(stray);
        delete instance.record.pid;
        this.#setState(instance, "stopped", { reason: "its start was interrupted by a manager restart" });
        interrupted.push(record.spec.instanceId);
      } else if (ACTIVE_STATES.includes(record.state)) {
        delete instance.record.pid;
        this.#setState(instance, "failed", {
          reason: "the VM process ended while the manager was not running",
          consoleTail: this.#failureTail(instance),
        });
      }
      found.push(this.status(record.spec.instanceId));
    }
    // Reported as they go (state events); a start that fails again leaves the instance failed.
    for (const instanceId of interrupted) this.start(instanceId).catch(() => {});
    return found;
  }

  async detach(): Promise<void> {
    this.#detached = true;
    this.#deferredWrites.flush();
    for (const [instanceId, instance] of this.#instances) {
      const vm = instance.vm;
      if (vm) {
        if (vm.pollTimer) clearInterval(vm.pollTimer);
        vm.child?.removeAllListeners("exit");
        vm.qmp?.removeAllListeners();
        vm.qmp?.close();
        vm.serial?.destroy();
      }
      await this.#options.metadata.unregisterInstance(instanceId);
    }
    this.#instances.clear();
    this.#options.metadata.off("guest-attribute", this.#onGuestAttribute);
  }

  get #qemuBinary(): string {
    return this.#options.qemuBinary ?? "qemu-system-x86_64";
  }

  get #qemuImgBinary(): string {
    return this.#options.qemuImgBinary ?? "qemu-img";
  }

  #require(instanceId: string): ManagedInstance {
    validateInstanceId(instanceId);
    const instance = this.#instances.get(instanceId);
    if (!instance) throw new ComputeError("not-found", `unknown instance ${instanceId}`, "instanceId");
    return instance;
  }

  #manage(dir: string, record: InstanceRecord): ManagedInstance {
    const instance: ManagedInstance = {
      dir,
      record,
      console: new BoundedConsoleLog(join(dir, "console.log"), this.#options.consoleLimitBytes ?? 256 * 1024),
      lines: new LineSplitter(),
      vm: undefined,
    };
    this.#instances.set(record.spec.instanceId, instance);
    return instance;
  }

  async #launch(instance: ManagedInstance, accelerator: Accelerator): Promise<void> {
    const { dir, record } = instance;
    const qmpSocket = join(dir, "qmp.sock");
    const serialSocket = join(dir, "console.sock");
    const overlayPath = join(dir, "overlay.qcow2");
    const identity = qemuIdentity(this.#options.qemuUser ?? DEFAULT_QEMU_USER, accelerator);
    if (record.spec.networkInterface && identity) ensureTunUsableByAll();
    const args = buildQemuArgs({
      instanceId: record.spec.instanceId,
      vcpus: record.spec.vcpus,
      memoryMb: record.spec.memoryMb,
      accelerator,
      image: { path: record.spec.image.path, format: record.spec.image.format },
      overlayPath,
      metadataEndpoint: relayTargetOf(
        this.#options.metadata.endpointOf(record.spec.instanceId),
        record.metadataPort,
      ),
      dnsEndpoint: relayTargetOf(
        this.#options.metadata.dnsEndpointOf(record.spec.instanceId),
        record.dnsPort ?? 0,
      ),
      relayCommand: this.#options.relayCommand ?? ["busybox", "nc"],
      ...(record.spec.networkInterface
        ? {
            privateNic: {
              tap: deviceName("tap", record.spec.instanceId),
              mac: guestMac(record.spec.instanceId),
            },
          }
        : {}),
    });
    const opened: number[] = [];
    const sockets: ListeningUnixSocket[] = [];
    let child: ChildProcess;
    try {
      const own = (fd: number) => {
        opened.push(fd);
        return fd;
      };
      const stdio: StdioOptions = ["ignore", "ignore", own(openSync(join(dir, "qemu.log"), "w"))];
      stdio[CHILD_FDS.image] = own(openSync(record.spec.image.path, "r"));
      stdio[CHILD_FDS.overlay] = own(openSync(overlayPath, "r+"));
      for (const [fd, path] of [
        [CHILD_FDS.qmp, qmpSocket],
        [CHILD_FDS.console, serialSocket],
      ] as const) {
        rmSync(path, { force: true });
        const socket = await listenUnixSocket(path);
        sockets.push(socket);
        stdio[fd] = socket.fd;
      }
      // Its own session: QEMU must outlive a manager that crashes or restarts. nsenter execs
      // QEMU (same pid, inherited descriptors) once in the namespace and as QEMU's user.
      const [program, ...argv] = qemuCommand(this.#qemuBinary, args, identity, this.#options.netns);
      child = spawn(program as string, argv, {
        detached: true,
        stdio,
        cwd: "/",
        ...(identity && !this.#options.netns ? { uid: identity.uid, gid: identity.gid } : {}),
      });
    } finally {
      // QEMU holds its own copies now.
      for (const fd of opened) closeSync(fd);
      for (const socket of sockets) socket.close();
    }
    child.unref();
    const pid = await new Promise<number>((resolvePid, reject) => {
      child.once("spawn", () => resolvePid(child.pid as number));
      child.once("error", (error) => reject(new Error(`cannot run ${this.#qemuBinary}: ${error.message}`)));
    });
    record.pid = pid;
    writeInstanceRecord(dir, record);

    const timeoutMs = this.#options.startTimeoutMs ?? 30_000;
    const exited = new Promise<string>((resolveExit) =>
      child.once("exit", (code, signal) => resolveExit(`QEMU exited (${signal ?? `status ${code}`})`)),
    );
    // The sockets exist before QEMU runs: a QEMU that fails early shows as a broken attach,
    // whose cause is told by its exit and its log.
    const attaching = this.#attach(instance, pid, child);
    const early = await Promise.race([
      attaching.then(
        () => undefined,
        async (error: unknown) => (await Promise.race([exited, delay(1_000)])) ?? Promise.reject(error),
      ),
      exited,
    ]);
    if (early !== undefined) throw new Error(`${early}: ${readTail(join(dir, "qemu.log"), 1_000)}`);
    await instance.vm?.qmp?.execute("cont", undefined, timeoutMs);
    this.#setState(instance, "running", {});
  }

  /** Connects to the QMP and console sockets of a QEMU process and watches for its end. */
  async #attach(instance: ManagedInstance, pid: number, child: ChildProcess | undefined): Promise<void> {
    const { dir } = instance;
    let markEnded = () => {};
    const ended = new Promise<void>((resolveEnded) => {
      markEnded = resolveEnded;
    });
    const vm: RunningVm = {
      pid,
      child,
      qmp: undefined,
      serial: undefined,
      serialClosed: Promise.resolve(),
      stopRequested: false,
      shutdownReason: undefined,
      panicked: false,
      ended,
      pollTimer: undefined,
    };
    instance.vm = vm;
    let handled = false;
    const onEnd = (exitCode: number | null, signal: string | null) => {
      if (handled) return;
      handled = true;
      void this.#vmEnded(instance, vm, exitCode, signal).finally(markEnded);
    };
    if (child) {
      child.once("exit", (code, signal) => onEnd(code, signal));
    } else {
      // Not our child any more (the manager restarted): no exit event, so poll the pid.
      vm.pollTimer = setInterval(() => {
        if (!isProcessRunning(pid)) onEnd(null, null);
      }, 200);
      vm.pollTimer.unref();
    }

    const timeoutMs = this.#options.startTimeoutMs ?? 30_000;
    const serial = await connectUnixSocket(join(dir, "console.sock"), timeoutMs);
    vm.serial = serial;
    vm.serialClosed = new Promise((resolveClosed) => serial.once("close", () => resolveClosed()));
    serial.setEncoding("utf8");
    serial.on("data", (chunk: string) => this.#consoleOutput(instance, chunk));
    serial.on("error", () => undefined);

    const qmp = await QmpClient.connect(join(dir, "qmp.sock"), timeoutMs);
    vm.qmp = qmp;
    qmp.on("event", ({ event, data }) => {
      if (event === "SHUTDOWN") vm.shutdownReason = typeof data.reason === "string" ? data.reason : undefined;
      if (event === "GUEST_PANICKED") vm.panicked = true;
    });
  }

  async #vmEnded(
    instance: ManagedInstance,
    vm: RunningVm,
    exitCode: number | null,
    signal: string | null,
  ): Promise<void> {
    if (vm.pollTimer) clearInterval(vm.pollTimer);
    // The console may still hold the guest's last words (a panic message): read them first.
    await withTimeout(vm.serialClosed, 1_000);
    vm.serial?.destroy();
    vm.qmp?.close();
    if (instance.vm === vm) instance.vm = undefined;
    delete instance.record.pid;
    rmSync(join(instance.dir, "qmp.sock"), { force: true });
    rmSync(join(instance.dir, "console.sock"), { force: true });
    if (this.#detached || !this.#instances.has(instance.record.spec.instanceId)) return;
    // A start that fails reports its own, more precise, reason.
    if (instance.record.state === "starting") return;
    const outcome = classifyVmEnd({
      requested: vm.stopRequested,
      shutdownReason: vm.shutdownReason,
      panicked: vm.panicked,
      exitCode,
      signal,
    });
    this.#setState(instance, outcome.state, {
      reason: outcome.reason,
      ...(outcome.state === "failed" ? { consoleTail: this.#failureTail(instance) } : {}),
    });
  }

  #consoleOutput(instance: ManagedInstance, chunk: string): void {
    instance.console.append(chunk);
    const at = new Date();
    for (const line of instance.lines.push(chunk)) {
      this.emit("console", { instanceId: instance.record.spec.instanceId, line, at });
    }
  }

  #guestAttributeWritten(write: GuestAttributeWrite): void {
    const instance = this.#instances.get(write.instanceId);
    if (!instance) return;
    instance.record.guestAttributes = { ...instance.record.guestAttributes, [write.path]: write.value };
    this.#deferredWrites.schedule(write.instanceId, instance.dir, () => instance.record);
    this.emit("guest-attribute", write);
    const saysReady = write.path === READY_ATTRIBUTE && write.value.trim() !== "false";
    if (saysReady && (instance.record.state === "running" || instance.record.state === "starting")) {
      this.#setState(instance, "ready", {});
    }
  }

  #failureTail(instance: ManagedInstance): string {
    return instance.console.lastLines(this.#options.consoleTailLines ?? 100);
  }

  #setState(
    instance: ManagedInstance,
    state: InstanceState,
    details: { reason?: string; consoleTail?: string },
  ): void {
    const previous = instance.record.state;
    instance.record.state = state;
    if (details.reason !== undefined) instance.record.reason = details.reason;
    else delete instance.record.reason;
    if (details.consoleTail !== undefined) instance.record.consoleTail = details.consoleTail;
    else delete instance.record.consoleTail;
    if (state === "stopped" || state === "failed") {
      // A guest that starts again must say it is ready again.
      const { [READY_ATTRIBUTE]: _ready, ...rest } = instance.record.guestAttributes;
      instance.record.guestAttributes = rest;
    }
    writeInstanceRecord(instance.dir, instance.record);
    this.#emitState(instance, previous);
  }

  #emitState(instance: ManagedInstance, previous: InstanceState | undefined): void {
    const { record } = instance;
    this.emit("state", {
      instanceId: record.spec.instanceId,
      state: record.state,
      previous,
      ...(record.reason !== undefined ? { reason: record.reason } : {}),
      ...(record.consoleTail !== undefined ? { consoleTail: record.consoleTail } : {}),
      at: new Date(),
    });
  }
}

function relayTargetOf(endpoint: MetadataEndpoint | undefined, recordedPort: number): RelayTarget {
  if (endpoint?.socket) return { socket: endpoint.socket };
  return { host: endpoint?.host ?? "127.0.0.1", port: recordedPort };
}

function identityOf(spec: InstanceSpec) {
  return {
    instanceId: spec.instanceId,
    name: spec.name,
    ...(spec.hostname !== undefined ? { hostname: spec.hostname } : {}),
    vmGroup: spec.vmGroup,
    region: spec.region,
    datacenter: spec.datacenter,
    image: spec.image.id,
    ...(spec.networkInterface
      ? {
          networkInterfaces: [
            {
              ip: spec.networkInterface.address,
              mac: guestMac(spec.instanceId),
              subnetmask: subnetMask(spec.networkInterface.prefixLength),
              mtu: String(spec.networkInterface.mtu),
              network: spec.networkInterface.network,
            },
          ],
        }
      : {}),
  };
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** Resolves true if the promise settled within the time, false otherwise. */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolveTimeout) => {
    timer = setTimeout(() => resolveTimeout(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<undefined> {
  return new Promise((resolveDelay) => setTimeout(() => resolveDelay(undefined), ms));
}

/** The virtual size of a stored image, which must be of its declared format and name no other file. */
async function inspectStoredImage(image: InstanceSpec["image"]): Promise<number> {
  const file = await open(image.path, "r");
  try {
    const inspection = await inspectImageFile(file, image.format, (await file.stat()).size);
    if (!inspection.ok) throw new Error(`refused: ${inspection.reason}`);
    return inspection.virtualSize;
  } finally {
    await file.close();
  }
}

function readTail(path: string, bytes: number): string {
  try {
    return readFileSync(path, "utf8").slice(-bytes).trim();
  } catch {
    return "";
  }
}
