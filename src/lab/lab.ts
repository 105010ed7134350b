import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { IsthmusError } from '../core/errors.js';
import { acquirePidLock } from '../core/pid-lock.js';
import { splitHostPort } from '../dataplane/address.js';
import type { TargetView } from '../chaos/drill/runner.js';
import { describeFault, type Fault } from '../chaos/fault.js';
import { LinkClient, type ToxicRequest } from './link-client.js';
import { Supervisor, type ProcessSpec, type ProcessStatus } from './supervisor.js';
import {
  linkFor,
  planLab,
  type LabInstance,
  type LabLink,
  type LabOptions,
  type LabTopology,
} from './topology.js';

/**
 * A whole multi-region mesh on one machine, as real processes on loopback: the global control
 * plane and collector, the link emulator on every cross-region path, and per region a zone
 * control plane, a collector, a gateway and the storefront's apps each beside its sidecar.
 * Faults go through the link emulator's Toxiproxy-compatible API (network) or the supervisor
 * (processes killed and restarted).
 */

const BIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const APPS = fileURLToPath(new URL('../../examples/storefront/', import.meta.url));
export const DEFAULT_MESH_DIR = fileURLToPath(new URL('../../../examples/mesh/', import.meta.url));

/** The baseline WAN toxics every link carries; heal leaves them in place. */
const WAN_PREFIX = 'wan-';
/** Held by the lab process while it runs, with its pid. */
const LOCK_FILE = 'lab.lock';

export interface LabStartOptions extends LabOptions {
  /**
   * Working folder: data, bootstraps, logs. Cleared at start when it holds an earlier lab; held
   * (`lab.lock`, with the pid) while the lab runs, so a second lab cannot clear it under the first.
   */
  dir: string;
  /** Mesh resources applied to the global control plane (default examples/mesh). */
  meshDir?: string;
  seed?: number;
  onProgress?: (p: { step: string; done: number; total: number; name?: string }) => void;
  onEvent?: (name: string, event: Record<string, unknown>) => void;
}

export interface ActiveFault {
  id: string;
  fault: Fault;
  description: string;
  sinceMs: number;
}

interface FaultState extends ActiveFault {
  toxics: { proxy: string; name: string }[];
  killed: string[];
  timer?: NodeJS.Timeout;
  stopped?: boolean;
}

/** The running lab as `GET /v1/lab` shows it. */
export interface LabView extends TargetView {
  dir: string;
  seed: number;
  global: LabTopology['global'];
  regions: {
    name: string;
    gateway: string;
    gatewayAdmin: string;
    zone: string;
    collector: string;
    instances: LabInstance[];
  }[];
  links: LabLink[];
  processes: ProcessStatus[];
  faults: ActiveFault[];
}

export class Lab {
  readonly #faults = new Map<string, FaultState>();
  #faultSeq = 0;

  private constructor(
    readonly topology: LabTopology,
    readonly dir: string,
    readonly supervisor: Supervisor,
    readonly link: LinkClient,
    readonly seed: number,
    release: () => void,
  ) {
    this.#release = release;
  }

  /** Gives the folder back (see start). */
  readonly #release: () => void;

  static async start(options: LabStartOptions): Promise<Lab> {
    const topology = planLab(options);
    const dir = path.resolve(options.dir);
    const entries = existsSync(dir) ? (await readdir(dir)).filter((name) => name !== LOCK_FILE) : [];
    if (entries.length > 0 && !entries.includes('lab.json'))
      throw new IsthmusError(
        'ISTHMUS_E_USAGE',
        `${dir} exists and is not a lab folder; give an empty or new folder with --dir`,
      );
    await mkdir(dir, { recursive: true });
    // A lab still running in the folder keeps it (its processes write there); an earlier one's
    // leftovers go.
    const release = acquirePidLock(dir, LOCK_FILE, 'lab folder');
    let supervisor: Supervisor | undefined;
    try {
      for (const name of entries) await rm(path.join(dir, name), { recursive: true, force: true });
      await writeFile(
        path.join(dir, 'lab.json'),
        JSON.stringify({ topology, startedAt: new Date() }, null, 2),
      );
      supervisor = new Supervisor({
        logDir: path.join(dir, 'logs'),
        ...(options.onEvent && { onEvent: options.onEvent }),
      });
      const lab = new Lab(
        topology,
        dir,
        supervisor,
        new LinkClient(`http://${topology.global.linkApi}`),
        options.seed ?? 1,
        release,
      );
      await lab.#boot(options);
      return lab;
    } catch (err) {
      await supervisor?.stopAll(2000);
      release();
      throw err;
    }
  }

  async #boot(options: LabStartOptions): Promise<void> {
    const t = this.topology;
    const specs = this.#specs();
    const total = specs.length + 1;
    let done = 0;
    const progress = (step: string, name?: string) =>
      options.onProgress?.({ step, done, total, ...(name !== undefined && { name }) });
    const startAll = async (step: string, group: ProcessSpec[]) => {
      progress(step);
      await Promise.all(
        group.map(async (spec) => {
          await this.supervisor.start(spec);
          done++;
          progress(step, spec.name);
        }),
      );
    };
    await this.#writeBootstraps();
    const byRole = (...roles: string[]) => specs.filter((s) => roles.includes(s.role));
    await startAll('link emulator', byRole('link'));
    await startAll('global control plane and collector', byRole('global', 'global-collector'));
    progress('applying the mesh');
    await this.#applyMesh(options.meshDir ?? DEFAULT_MESH_DIR);
    done++;
    await startAll('zones and collectors', byRole('zone', 'collector'));
    await startAll('gateways and apps', byRole('gateway', 'app'));
    await startAll('sidecars', byRole('sidecar'));
    progress('waiting for every proxy to have its configuration');
    await Promise.all(
      [
        ...t.regions.map((r) => r.gatewayAdmin),
        ...t.regions.flatMap((r) => r.instances.map((i) => i.admin)),
      ].map((admin) => waitReady(admin, 30_000)),
    );
  }

  /** Every process of the lab, in start order. */
  #specs(): ProcessSpec[] {
    const t = this.topology;
    const d = (...p: string[]) => path.join(this.dir, ...p);
    const specs: ProcessSpec[] = [
      {
        name: 'link',
        role: 'link',
        region: 'global',
        script: BIN,
        args: [
          'link',
          '--listen',
          t.global.linkApi,
          '--config',
          d('links.json'),
          '--seed',
          String(this.seed),
        ],
      },
      {
        name: 'global',
        role: 'global',
        region: 'global',
        script: BIN,
        args: ['global', '--data-dir', d('global'), '--listen', t.global.controlPlane, '--id', 'global'],
      },
      {
        name: 'collector-global',
        role: 'global-collector',
        region: 'global',
        script: BIN,
        args: [
          'collector',
          '--region',
          'global',
          '--data-dir',
          d('collector-global'),
          '--listen',
          t.global.collector,
          '--regions',
          t.regions.map((r) => `${r.name}=http://${r.collector}`).join(','),
        ],
      },
    ];
    for (const r of t.regions) {
      const control = linkFor(this.topology, r.name, 'global', 'control');
      const telemetry = linkFor(this.topology, r.name, 'global', 'telemetry');
      specs.push(
        {
          name: `zone-${r.name}`,
          role: 'zone',
          region: r.name,
          script: BIN,
          args: [
            'zone',
            '--region',
            r.name,
            '--global',
            `http://${control.listen}`,
            '--data-dir',
            d(`zone-${r.name}`),
            '--listen',
            r.zoneListen,
            '--id',
            `zone-${r.name}`,
          ],
        },
        {
          name: `collector-${r.name}`,
          role: 'collector',
          region: r.name,
          script: BIN,
          args: [
            'collector',
            '--region',
            r.name,
            '--data-dir',
            d(`collector-${r.name}`),
            '--listen',
            r.collector,
            '--upstream',
            `http://${telemetry.listen}`,
          ],
        },
        {
          name: `gateway-${r.name}`,
          role: 'gateway',
          region: r.name,
          script: BIN,
          args: ['gateway', '-c', d('bootstrap', `gateway-${r.name}.yaml`)],
        },
      );
      for (const i of r.instances)
        specs.push(
          {
            name: `app-${i.name}`,
            role: 'app',
            region: r.name,
            script: path.join(APPS, `${i.service}.js`),
            args: [
              '--service',
              i.service,
              '--listen',
              `${i.address}:${i.appPort}`,
              '--proxy',
              `http://${i.outbound}`,
              '--region',
              i.region,
              '--zone',
              i.zone,
              '--instance',
              i.name,
            ],
          },
          {
            name: `sidecar-${i.name}`,
            role: 'sidecar',
            region: r.name,
            script: BIN,
            args: ['proxy', '-c', d('bootstrap', `${i.name}.yaml`)],
          },
        );
    }
    return specs;
  }

  async #writeBootstraps(): Promise<void> {
    const t = this.topology;
    await mkdir(path.join(this.dir, 'bootstrap'), { recursive: true });
    const links = t.links.map((l) => ({
      name: l.name,
      listen: l.listen,
      upstream: l.upstream,
      enabled: true,
      from: l.from,
      to: l.to,
      purpose: l.purpose,
      toxics: wanToxics(l),
    }));
    await writeFile(path.join(this.dir, 'links.json'), JSON.stringify(links, null, 2));
    for (const r of t.regions) {
      const gateways = Object.fromEntries(
        t.regions
          .filter((o) => o !== r)
          .map((o) => [o.name, linkFor(this.topology, r.name, o.name, 'data').listen]),
      );
      const common = (name: string) => ({
        controlPlane: {
          zones: [`ws://${r.zoneListen}`],
          dataDir: path.join(this.dir, 'proxy-data', name, 'lkg'),
        },
        telemetry: {
          collector: `http://${r.collector}`,
          dataDir: path.join(this.dir, 'proxy-data', name, 'wal'),
        },
        seed: this.seed,
      });
      await writeFile(
        path.join(this.dir, 'bootstrap', `gateway-${r.name}.yaml`),
        bootstrapYaml(`gateway-${r.name}`, {
          mode: 'gateway',
          locality: `${r.name}/${r.zones[0]}`,
          gateway: { listen: r.gateway },
          admin: { listen: r.gatewayAdmin },
          ...common(`gateway-${r.name}`),
        }),
      );
      for (const i of r.instances)
        await writeFile(
          path.join(this.dir, 'bootstrap', `${i.name}.yaml`),
          bootstrapYaml(i.name, {
            mode: 'sidecar',
            service: i.service,
            locality: `${i.region}/${i.zone}`,
            inbound: { listen: i.inbound, app: `${i.address}:${i.appPort}` },
            outbound: { listen: i.outbound },
            admin: { listen: i.admin },
            ...(Object.keys(gateways).length > 0 && { regionGateways: gateways }),
            ...common(i.name),
          }),
        );
    }
  }

  async #applyMesh(meshDir: string): Promise<void> {
    const { validatePaths } = await import('../model/validate.js');
    const result = await validatePaths([meshDir]);
    if (!result.ok)
      throw new IsthmusError(
        'ISTHMUS_E_INVALID_RESOURCE',
        `the lab's mesh ${meshDir} is invalid: run isthmus validate ${meshDir}`,
      );
    const { ApiClient } = await import('../controlplane/api-client.js');
    const api = new ApiClient(`http://${this.topology.global.controlPlane}`);
    const live = await api.get<{ revision: number }>('/v1/resources');
    await api.post('/v1/apply', {
      resources: result.resources.map((r) => r.resource),
      baseRevision: live.revision,
      actor: 'isthmus-lab',
      message: `lab start: ${meshDir}`,
    });
  }

  // ------------------------------------------------------------------------------------------
  // Faults
  // ------------------------------------------------------------------------------------------

  get faults(): ActiveFault[] {
    return [...this.#faults.values()].map(({ id, fault, description, sinceMs }) => ({
      id,
      fault,
      description,
      sinceMs,
    }));
  }

  #regionNames(): string[] {
    return this.topology.regions.map((r) => r.name);
  }

  #checkRegion(region: string | undefined, what: string, allowGlobal = false): void {
    if (region === undefined) return;
    if (allowGlobal && region === 'global') return;
    if (!this.#regionNames().includes(region))
      throw new IsthmusError(
        'ISTHMUS_E_NOT_FOUND',
        `${what} "${region}" is not a region of this lab (${this.#regionNames().join(', ')})`,
      );
  }

  /** Injects `fault`; returns its id (used to remove it). */
  async applyFault(fault: Fault, id?: string): Promise<string> {
    const faultId = id ?? `f${++this.#faultSeq}`;
    if (this.#faults.has(faultId))
      throw new IsthmusError('ISTHMUS_E_CONFLICT', `fault "${faultId}" is already active`);
    const state: FaultState = {
      id: faultId,
      fault,
      description: describeFault(fault),
      sinceMs: Date.now(),
      toxics: [],
      killed: [],
    };
    switch (fault.type) {
      case 'partition': {
        this.#checkRegion(fault.region, 'region');
        this.#checkRegion(fault.from, 'from');
        this.#checkRegion(fault.to, 'to', true);
        if (fault.region === undefined && (fault.from === undefined || fault.to === undefined))
          throw new IsthmusError('ISTHMUS_E_USAGE', 'a partition needs a region, or from and to');
        await this.#addToxics(state, partitionToxics(this.topology.links, fault, faultId));
        break;
      }
      case 'latency':
      case 'loss':
      case 'bandwidth': {
        this.#checkRegion(fault.from, 'from');
        this.#checkRegion(fault.to, 'to', true);
        const links = this.topology.links.filter((l) => l.from === fault.from && l.to === fault.to);
        const toxics: { proxy: string; toxic: ToxicRequest }[] = [];
        for (const l of links) {
          if (fault.type === 'latency')
            for (const stream of ['upstream', 'downstream'] as const)
              toxics.push({
                proxy: l.name,
                toxic: {
                  name: `fault-${faultId}-${stream}`,
                  type: 'latency',
                  stream,
                  attributes: {
                    // Half each way: the round trip grows by the fault's latency.
                    latency: Math.round(fault.latencyMs / 2),
                    jitter: Math.round((fault.jitterMs ?? 0) / 2),
                    ...(fault.distribution !== undefined && { distribution: fault.distribution }),
                  },
                },
              });
          else if (fault.type === 'loss')
            for (const stream of ['upstream', 'downstream'] as const)
              toxics.push({
                proxy: l.name,
                toxic: {
                  name: `fault-${faultId}-${stream}`,
                  type: 'loss',
                  stream,
                  attributes: {
                    probability: fault.probability,
                    ...(fault.stallMs !== undefined && { stall: fault.stallMs }),
                  },
                },
              });
          else
            toxics.push({
              proxy: l.name,
              toxic: {
                name: `fault-${faultId}-downstream`,
                type: 'bandwidth',
                stream: 'downstream',
                attributes: { rate: fault.rateKBps },
              },
            });
        }
        await this.#addToxics(state, toxics);
        break;
      }
      case 'flap': {
        this.#checkRegion(fault.from, 'from');
        this.#checkRegion(fault.to, 'to', true);
        const cut = partitionToxics(
          this.topology.links,
          {
            type: 'partition',
            from: fault.from,
            to: fault.to,
            mode: fault.mode ?? 'blackhole',
            direction: 'both',
          },
          faultId,
        );
        const cycle = async (down: boolean) => {
          if (state.stopped) return;
          try {
            if (down) await this.#addToxics(state, cut);
            else await this.#removeToxics(state);
          } catch {
            // The emulator is gone (lab stopping); the fault's removal cleans up.
          }
          if (state.stopped) return;
          state.timer = setTimeout(() => void cycle(!down), down ? fault.downMs : fault.upMs);
        };
        await cycle(true);
        break;
      }
      case 'region-outage':
        this.#checkRegion(fault.region, 'region');
        await this.#kill(state, (s) => s.region === fault.region);
        break;
      case 'control-plane-loss':
        if (fault.scope === 'zone') {
          if (fault.region === undefined)
            throw new IsthmusError('ISTHMUS_E_USAGE', 'a zone control-plane loss needs a region');
          this.#checkRegion(fault.region, 'region');
        }
        await this.#kill(state, (s) =>
          fault.scope === 'global' ? s.name === 'global' : s.name === `zone-${fault.region}`,
        );
        break;
      case 'proxy-restart': {
        this.#checkRegion(fault.region, 'region');
        const names = this.supervisor
          .status()
          .filter(
            (s) =>
              s.role === 'sidecar' &&
              s.region === fault.region &&
              s.name.startsWith(`sidecar-${fault.service}-`),
          )
          .map((s) => s.name);
        if (names.length === 0)
          throw new IsthmusError(
            'ISTHMUS_E_NOT_FOUND',
            `no ${fault.service} sidecar runs in ${fault.region}`,
          );
        // Instantaneous: killed and started again; nothing to remove later.
        for (const n of names) await this.supervisor.restart(n);
        return faultId;
      }
    }
    this.#faults.set(faultId, state);
    return faultId;
  }

  async #addToxics(state: FaultState, toxics: { proxy: string; toxic: ToxicRequest }[]): Promise<void> {
    for (const { proxy, toxic } of toxics) {
      await this.link.addToxic(proxy, toxic);
      state.toxics.push({ proxy, name: toxic.name });
    }
  }

  async #removeToxics(state: FaultState): Promise<void> {
    const toxics = state.toxics.splice(0);
    for (const t of toxics) await this.link.removeToxic(t.proxy, t.name).catch(() => undefined);
  }

  async #kill(state: FaultState, which: (s: ProcessStatus) => boolean): Promise<void> {
    const victims = this.supervisor
      .status()
      .filter((s) => which(s) && (s.state === 'running' || s.state === 'starting'));
    await Promise.all(victims.map((v) => this.supervisor.kill(v.name, 'SIGKILL')));
    state.killed.push(...victims.map((v) => v.name));
  }

  /** Removes one fault: its toxics go, the processes it killed start again. */
  async removeFault(id: string): Promise<void> {
    const state = this.#faults.get(id);
    if (!state) throw new IsthmusError('ISTHMUS_E_NOT_FOUND', `no active fault "${id}"`);
    state.stopped = true;
    clearTimeout(state.timer);
    await this.#removeToxics(state);
    await this.#restart(state.killed);
    this.#faults.delete(id);
  }

  /** Restarts processes in dependency order: control plane and collectors, then gateways and apps, then sidecars. */
  async #restart(names: string[]): Promise<void> {
    const order = ['link', 'global', 'global-collector', 'zone', 'collector', 'gateway', 'app', 'sidecar'];
    for (const role of order) {
      const group = names.filter((n) => this.supervisor.spec(n).role === role);
      await Promise.all(group.map((n) => this.supervisor.restart(n)));
    }
  }

  /** Removes every fault; with `restore`, also starts every process that is not running. */
  async healAll(options: { restore?: boolean } = {}): Promise<void> {
    for (const id of [...this.#faults.keys()]) await this.removeFault(id);
    // Anything left by hand (a toxic added through the API directly) goes too, except the WAN baseline.
    for (const p of await this.link.proxies())
      for (const t of p.toxics)
        if (!t.name.startsWith(WAN_PREFIX))
          await this.link.removeToxic(p.name, t.name).catch(() => undefined);
    if (options.restore) {
      const down = this.supervisor
        .status()
        .filter((s) => s.state !== 'running')
        .map((s) => s.name);
      await this.#restart(down);
    }
  }

  /** Whether the network is whole again: no fault toxics, every link accepting, every process up. */
  async verifyHealed(): Promise<{ healed: boolean; problems: string[] }> {
    const problems: string[] = [];
    for (const p of await this.link.proxies()) {
      if (!p.enabled) problems.push(`link ${p.name} is disabled`);
      for (const t of p.toxics)
        if (!t.name.startsWith(WAN_PREFIX)) problems.push(`link ${p.name} still has ${t.name}`);
    }
    await Promise.all(
      this.topology.links.map(async (l) => {
        if (!(await canConnect(l.listen))) problems.push(`link ${l.name} (${l.listen}) refuses connections`);
      }),
    );
    for (const s of this.supervisor.status())
      if (s.state !== 'running') problems.push(`${s.name} is ${s.state}`);
    return { healed: problems.length === 0, problems };
  }

  /** Where the workload goes: each frontend's sidecar inbound. */
  frontends(): { region: string; url: string }[] {
    return this.#instances('frontend').map((i) => ({ region: i.region, url: `http://${i.inbound}` }));
  }

  #instances(service?: string): LabInstance[] {
    return this.topology.regions
      .flatMap((r) => r.instances)
      .filter((i) => service === undefined || i.service === service);
  }

  /** Everything about the running lab (`GET /v1/lab`); a drill's view of it is a subset. */
  describe(): LabView {
    const t = this.topology;
    return {
      dir: this.dir,
      seed: this.seed,
      global: t.global,
      regions: t.regions.map((r) => ({
        name: r.name,
        gateway: r.gateway,
        gatewayAdmin: r.gatewayAdmin,
        zone: r.zoneListen,
        collector: r.collector,
        instances: r.instances,
      })),
      links: t.links,
      frontends: this.frontends(),
      orders: this.#instances('orders').map((i) => `http://${i.address}:${i.appPort}`),
      proxies: [
        ...t.regions.map((r) => ({
          region: r.name,
          name: `gateway-${r.name}`,
          admin: `http://${r.gatewayAdmin}`,
        })),
        ...this.#instances().map((i) => ({
          region: i.region,
          name: `sidecar-${i.name}`,
          admin: `http://${i.admin}`,
        })),
      ],
      collectors: [
        ...t.regions.map((r) => ({ region: r.name, url: `http://${r.collector}` })),
        { region: 'global', url: `http://${t.global.collector}` },
      ],
      processes: this.supervisor.status(),
      faults: this.faults,
    };
  }

  async stop(): Promise<void> {
    for (const f of this.#faults.values()) {
      f.stopped = true;
      clearTimeout(f.timer);
    }
    await this.supervisor.stopAll(5000);
    this.#release();
  }
}

function wanToxics(l: LabLink): ToxicRequest[] {
  if (l.latencyMs <= 0) return [];
  return (['upstream', 'downstream'] as const).map((stream) => ({
    name: `${WAN_PREFIX}${stream}`,
    type: 'latency',
    stream,
    attributes: { latency: l.latencyMs, jitter: Math.round(l.latencyMs / 10) },
  }));
}

type Partition = Extract<Fault, { type: 'partition' }>;
/** A partition; mode, direction and scope default as in the drill spec (blackhole, both, all). */
export type PartitionCut = Omit<Partition, 'mode' | 'direction' | 'scope'> &
  Partial<Pick<Partition, 'mode' | 'direction' | 'scope'>>;

/**
 * The toxics of a partition. Links are per initiating side: `A>B` carries connections A opens to
 * B; its upstream stream is A's bytes to B. A one-way cut A→B stops A's bytes reaching B: the
 * upstream of A>B links and the downstream of B>A links. Reject and reset act on connections, so
 * they go on the links A opens (both ways: on both sides' links).
 */
export function partitionToxics(
  links: readonly LabLink[],
  fault: PartitionCut,
  faultId: string,
): { proxy: string; toxic: ToxicRequest }[] {
  const mode = fault.mode ?? 'blackhole';
  const scope = fault.scope ?? 'all';
  const oneWay = fault.direction === 'one-way';
  const out: { proxy: string; toxic: ToxicRequest }[] = [];
  const add = (l: LabLink, stream: 'upstream' | 'downstream') => {
    if (fault.purpose !== undefined && l.purpose !== fault.purpose) return;
    out.push({
      proxy: l.name,
      toxic: { name: `fault-${faultId}-${stream}`, type: 'partition', stream, attributes: { mode, scope } },
    });
  };
  const outgoing = (a: string, b: string | undefined) =>
    links.filter((l) => l.from === a && (b === undefined || l.to === b));
  const incoming = (a: string, b: string | undefined) =>
    links.filter((l) => l.to === a && (b === undefined || l.from === b));
  const [a, b] = fault.region !== undefined ? [fault.region, undefined] : [fault.from as string, fault.to];
  if (mode !== 'blackhole') {
    for (const l of outgoing(a, b)) add(l, 'upstream');
    if (!oneWay) for (const l of incoming(a, b)) add(l, 'upstream');
    // One-way: B's connections to A still open, but A's answers never reach B (a silent loss:
    // a reset or refusal on B's own links would cut both directions).
    if (oneWay)
      for (const l of incoming(a, b))
        if (fault.purpose === undefined || l.purpose === fault.purpose)
          out.push({
            proxy: l.name,
            toxic: {
              name: `fault-${faultId}-downstream`,
              type: 'partition',
              stream: 'downstream',
              attributes: { mode: 'blackhole', scope },
            },
          });
    return out;
  }
  for (const l of outgoing(a, b)) {
    add(l, 'upstream');
    if (!oneWay) add(l, 'downstream');
  }
  for (const l of incoming(a, b)) {
    add(l, 'downstream');
    if (!oneWay) add(l, 'upstream');
  }
  return out;
}

function bootstrapYaml(name: string, spec: Record<string, unknown>): string {
  // JSON is YAML: no quoting rules to get wrong.
  return JSON.stringify(
    { apiVersion: 'isthmus.dev/v1alpha1', kind: 'ProxyBootstrap', metadata: { name }, spec },
    null,
    2,
  );
}

async function waitReady(admin: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await request(`http://${admin}/ready`, { headersTimeout: 2000, bodyTimeout: 2000 });
      last = await res.body.text();
      if (res.statusCode === 200) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new IsthmusError(
    'ISTHMUS_E_IO',
    `the proxy at ${admin} had no configuration after ${timeoutMs} ms: ${last}`,
  );
}

function canConnect(hostPort: string): Promise<boolean> {
  const { host, port } = splitHostPort(hostPort);
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
