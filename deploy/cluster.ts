import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Version } from '../domain/gray.js';
import { assertLimits } from '../domain/limits.js';
import type { TopologyFile, UnitSpec } from '../domain/topology.js';
import { CopySupervisor } from './copy-supervisor.js';

// Starts a cluster as real processes: one per unit, then the gateway. Used by
// `npm start`, the tests, the benchmarks and the fault injection. Every process
// is started from the compiled code in dist/ (npm test and npm start build first).

const here = fileURLToPath(new URL('.', import.meta.url));
/** Repository root, whether this module runs from deploy/ (tests) or dist/deploy/ (compiled). */
export const repoRoot = resolve(here, here.includes('/dist/') ? '../..' : '..');
export const defaultTopologyPath = join(repoRoot, 'deploy', 'topology.json');

export interface ClusterOptions {
  /** Folder for the stores, the generated topology and the process logs. */
  root: string;
  /** Number of units (ids dsu-1..dsu-n), or the unit specs of the base topology when omitted. */
  units?: number;
  /** 0 picks a free port. */
  gatewayPort?: number;
  /** Fixed unit ports; 0 (default) picks free ones. */
  fixedUnitPorts?: boolean;
  base?: TopologyFile;
  env?: Record<string, string>;
  /** Extra Node.js options for every process, e.g. ['--cpu-prof'] for profiling. */
  nodeArgs?: string[];
  /** Where process output goes: a log file in root (default) or inherit. */
  output?: 'file' | 'inherit';
  /** Start a gray instance beside every unit's stable one, over the same store (default false). */
  gray?: boolean;
  /** Run every unit as an HA pair: a second copy with its own store (default false). */
  ha?: boolean;
  /**
   * Restart an HA unit copy that dies without being asked to (deploy/copy-supervisor.ts);
   * for npm start. Off by default: tests and fault injection start and stop every copy themselves.
   */
  superviseCopies?: boolean;
  /** Where the launcher's own lines (restarts) go besides the cluster log, e.g. the terminal of npm start. */
  onLauncherLine?: (line: string) => void;
}

/** Which copy of an HA unit: "a" is the unit's own place in the topology, "b" its standby entry. */
export type Copy = 'a' | 'b';

export interface RunningProcess {
  child: ChildProcess;
  port: number;
}

const startTimeoutMs = 20_000;

export class Cluster {
  readonly topology: TopologyFile;
  readonly topologyPath: string;
  gatewayUrl = '';
  gateway: RunningProcess | null = null;
  readonly units = new Map<string, RunningProcess | null>();
  readonly grayUnits = new Map<string, RunningProcess | null>();
  /** The second copies of HA units. */
  readonly standbys = new Map<string, RunningProcess | null>();
  /** Log file descriptor; process output is rare (no per-request logs), so synchronous appends are fine. */
  private log: number | null;
  private readonly supervisor: CopySupervisor | null;
  /** Processes this launcher stopped or killed itself: their exit is no failure to supervise. */
  private readonly expectedExits = new WeakSet<ChildProcess>();

  constructor(private readonly options: ClusterOptions) {
    assertLimits();
    // The gateway would refuse the topology (domain/topology.ts says why); say it here, where the options are.
    if (options.gray === true && options.ha === true) throw new Error('a cluster runs gray instances or HA pairs, not both');
    mkdirSync(options.root, { recursive: true });
    const base = options.base ?? (JSON.parse(readFileSync(defaultTopologyPath, 'utf8')) as TopologyFile);
    const count = options.units ?? base.units.length;
    const units: UnitSpec[] = [];
    for (let i = 1; i <= count; i++) {
      const template = base.units[i - 1];
      const fixed = options.fixedUnitPorts === true && template !== undefined;
      const port = fixed ? template.port : 0;
      // A template names its standby's port apart (standbyPort) because it also names gray ports, and a running unit has one or the other.
      const standbyPort = fixed ? template.standbyPort ?? template.standby?.port ?? 0 : 0;
      const unit: UnitSpec = { id: `dsu-${i}`, url: '', port, dataDir: join(options.root, `dsu-${i}`), weight: template?.weight ?? 1 };
      if (options.gray === true) unit.gray = { url: '', port: fixed && template.gray !== undefined ? template.gray.port : 0 };
      if (options.ha === true) unit.standby = { url: '', port: standbyPort, dataDir: join(options.root, `dsu-${i}-b`) };
      units.push(unit);
    }
    this.topology = { ...base, units, gateway: { ...base.gateway, port: options.gatewayPort ?? 0 } };
    this.topologyPath = join(options.root, 'topology.json');
    this.log = options.output === 'inherit' ? null : openSync(join(options.root, 'cluster.log'), 'a');
    this.supervisor = options.superviseCopies === true && options.ha === true
      ? new CopySupervisor({ restart: (unitId, copy) => this.startCopy(unitId, copy), log: (line) => this.launcherLine(line) })
      : null;
  }

  /** Starts every unit, then the gateway; on failure stops whatever did start. */
  async start(): Promise<void> {
    this.writeTopology();
    this.supervisor?.resume();
    try {
      const starts = this.topology.units.map((unit) => this.startUnit(unit.id));
      // Gray instances after the stable ones: the first instance over a new store creates its schema.
      const started = await Promise.allSettled(starts);
      const grayStarted = await Promise.allSettled(this.topology.units.filter((unit) => unit.gray !== undefined).map((unit) => this.startUnit(unit.id, 'gray')));
      const standbysStarted = await Promise.allSettled(this.topology.units.filter((unit) => unit.standby !== undefined).map((unit) => this.startCopy(unit.id, 'b')));
      const failed = [...started, ...grayStarted, ...standbysStarted].find((result) => result.status === 'rejected');
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
      await this.startGateway();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  unitSpec(unitId: string): UnitSpec {
    const spec = this.topology.units.find((unit) => unit.id === unitId);
    if (spec === undefined) throw new Error(`no unit ${unitId}`);
    return spec;
  }

  /** Starts (or restarts) a unit instance on its known port, or a free one the first time. */
  async startUnit(unitId: string, role: Version = 'stable'): Promise<void> {
    const spec = this.unitSpec(unitId);
    const place = role === 'stable' ? spec : spec.gray;
    if (place === undefined) throw new Error(`unit ${unitId} has no gray instance`);
    const args = ['--id', unitId, '--topology', this.topologyPath, '--port', String(place.port), '--data-dir', spec.dataDir, '--role', role];
    if (spec.standby !== undefined) args.push('--ha');
    const running = await this.spawnNode(join(repoRoot, 'dist/units/main.js'), args, role === 'stable' ? unitId : `${unitId}/gray`);
    place.port = running.port;
    place.url = `http://127.0.0.1:${running.port}`;
    (role === 'stable' ? this.units : this.grayUnits).set(unitId, running);
    this.writeTopology();
    if (role === 'stable' && spec.standby !== undefined) this.supervise(unitId, 'a', running.child);
  }

  /** Starts (or restarts) one copy of an HA unit; it comes up as standby and the gateway decides its role. */
  async startCopy(unitId: string, copy: Copy): Promise<void> {
    if (copy === 'a') return this.startUnit(unitId);
    const spec = this.unitSpec(unitId);
    const place = spec.standby;
    if (place === undefined) throw new Error(`unit ${unitId} has no standby copy`);
    const args = ['--id', unitId, '--topology', this.topologyPath, '--port', String(place.port), '--data-dir', place.dataDir, '--ha'];
    const running = await this.spawnNode(join(repoRoot, 'dist/units/main.js'), args, `${unitId}/b`);
    place.port = running.port;
    place.url = `http://127.0.0.1:${running.port}`;
    this.standbys.set(unitId, running);
    this.writeTopology();
    this.supervise(unitId, 'b', running.child);
  }

  /** Sends a signal to one copy of an HA unit (SIGKILL: a crash; SIGSTOP: a freeze) and, unless it freezes, waits for the exit. */
  async signalCopy(unitId: string, copy: Copy, signal: NodeJS.Signals): Promise<void> {
    const processes = copy === 'a' ? this.units : this.standbys;
    const running = processes.get(unitId);
    if (running === undefined || running === null) return;
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') {
      running.child.kill(signal);
      return;
    }
    await this.stopChild(running.child, signal);
    processes.set(unitId, null);
  }

  /** The copy ("a" or "b") whose URL is `url`, or null. */
  copyAt(unitId: string, url: string): Copy | null {
    const spec = this.unitSpec(unitId);
    if (spec.url === url) return 'a';
    return spec.standby?.url === url ? 'b' : null;
  }

  async startGateway(): Promise<void> {
    const port = this.gateway?.port ?? this.topology.gateway.port;
    const args = ['--topology', this.topologyPath, '--port', String(port), '--state-dir', join(this.options.root, 'gateway')];
    const running = await this.spawnNode(join(repoRoot, 'dist/gateway/main.js'), args, 'gateway');
    this.gateway = running;
    this.gatewayUrl = `http://127.0.0.1:${running.port}`;
  }

  /** Stops the gateway (SIGTERM: it finishes the requests it holds); startGateway brings it back on its port. */
  async stopGateway(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.gateway === null) return;
    await this.stopChild(this.gateway.child, signal);
  }

  /** Sends a signal (SIGKILL for a crash) and waits for the process to exit. */
  async killUnit(unitId: string, signal: NodeJS.Signals = 'SIGKILL', role: Version = 'stable'): Promise<void> {
    const processes = role === 'stable' ? this.units : this.grayUnits;
    const running = processes.get(unitId);
    if (running === undefined || running === null) return;
    await this.stopChild(running.child, signal);
    processes.set(unitId, null);
  }

  async stop(): Promise<void> {
    // First, so no copy is restarted while (or after) everything stops.
    await this.supervisor?.stop();
    const all: ChildProcess[] = [];
    if (this.gateway !== null) all.push(this.gateway.child);
    for (const running of [...this.units.values(), ...this.grayUnits.values(), ...this.standbys.values()]) if (running !== null) all.push(running.child);
    await Promise.all(all.map((child) => this.stopChild(child, 'SIGTERM')));
    this.gateway = null;
    for (const unitId of this.units.keys()) this.units.set(unitId, null);
    for (const unitId of this.grayUnits.keys()) this.grayUnits.set(unitId, null);
    for (const unitId of this.standbys.keys()) this.standbys.set(unitId, null);
  }

  /** Stops every process and closes the log; the cluster cannot be restarted after. */
  async close(): Promise<void> {
    await this.stop();
    if (this.log !== null) closeSync(this.log);
    this.log = null;
  }

  /** Written whole and renamed into place: a starting process never reads half a file. */
  private writeTopology(): void {
    const temporary = `${this.topologyPath}.${process.pid}.tmp`;
    writeFileSync(temporary, JSON.stringify(this.topology, null, 2));
    renameSync(temporary, this.topologyPath);
  }

  private spawnNode(script: string, args: string[], name: string): Promise<RunningProcess> {
    return spawnListening({
      script, args, name, env: this.options.env ?? {}, nodeArgs: this.options.nodeArgs ?? [],
      onOutput: (text) => this.write(name, text),
    });
  }

  private stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
    this.expectedExits.add(child);
    return stopProcess(child, signal);
  }

  /** Hands an unexpected exit of an HA copy to the supervisor, when there is one. */
  private supervise(unitId: string, copy: Copy, child: ChildProcess): void {
    const supervisor = this.supervisor;
    if (supervisor === null) return;
    child.once('exit', (code, signal) => {
      if (!this.expectedExits.has(child)) supervisor.exited(unitId, copy, signal ?? `exit code ${code}`);
    });
  }

  private launcherLine(line: string): void {
    this.write('launcher', `${new Date().toISOString()} ${line}\n`);
    this.options.onLauncherLine?.(line);
  }

  private write(name: string, text: string): void {
    if (this.log !== null) writeSync(this.log, `[${name}] ${text}`);
    else process.stdout.write(`[${name}] ${text}`);
  }
}

export interface SpawnOptions {
  script: string;
  args: string[];
  name: string;
  env?: Record<string, string>;
  nodeArgs?: string[];
  onOutput?: (text: string) => void;
}

/**
 * Starts a Node.js process that prints a JSON line with msg "listening" and its
 * port, and resolves once it has. The process exits with its parent.
 */
export function spawnListening(options: SpawnOptions): Promise<RunningProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.script, ...options.args], {
    env: { ...process.env, DSU_EXIT_WITH_PARENT: '1', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = options.onOutput ?? ((): void => {});
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${options.name} did not start within ${startTimeoutMs} ms`));
    }, startTimeoutMs);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      output(chunk.toString());
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${options.name} exited with ${code} before listening: ${stderr.slice(0, 500)}`));
    });
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      output(line + '\n');
      if (!line.includes('"msg":"listening"')) return;
      const port = (JSON.parse(line) as { port: number }).port;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolvePromise({ child, port });
    });
  });
}

export function stopProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    // A frozen process (fault injection) must run again to handle SIGTERM.
    if (signal === 'SIGTERM') child.kill('SIGCONT');
    child.kill(signal);
  });
}
