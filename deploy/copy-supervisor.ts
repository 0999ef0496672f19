import { limits } from '../domain/limits.js';
import type { Copy } from './cluster.js';

// Supervision of HA unit copies for `npm start -- --ha`: a copy that dies
// without the launcher asking (kill -9 from a load-test hook, a crash) is
// started again after copyRestartDelayMs. It comes back as standby, as every
// copy starts, and catches up from its primary; the gateway has switched away
// from it meanwhile. Restarts of one copy are bounded (copyRestartsPerWindowMax
// per copyRestartWindowMs), so a copy that dies at every start is left down
// and said so instead of looping. Tests and `npm run chaos` do not use this:
// they kill and restart copies themselves and must see exactly what they did.

export interface CopySupervisorOptions {
  /** Starts the copy again on its port. */
  restart: (unitId: string, copy: Copy) => Promise<void>;
  log: (line: string) => void;
  nowMs?: () => number;
}

/** The restart times (ms) still inside the window at `nowMs`; pure, so a test can move time. */
export function restartsInWindow(restartsMs: readonly number[], nowMs: number): number[] {
  return restartsMs.filter((atMs) => nowMs - atMs < limits.copyRestartWindowMs);
}

export class CopySupervisor {
  private readonly restartsMs = new Map<string, number[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly inflight = new Set<Promise<void>>();
  private active = true;
  private readonly nowMs: () => number;

  constructor(private readonly options: CopySupervisorOptions) {
    this.nowMs = options.nowMs ?? (() => Date.now());
  }

  /** A copy exited without being asked to: restart it after the delay, unless it was restarted too often. */
  exited(unitId: string, copy: Copy, how: string): void {
    if (!this.active) return;
    const name = `${unitId}/${copy}`;
    const nowMs = this.nowMs();
    const recent = restartsInWindow(this.restartsMs.get(name) ?? [], nowMs);
    if (recent.length >= limits.copyRestartsPerWindowMax) {
      this.restartsMs.set(name, recent);
      this.options.log(`${name} exited (${how}); NOT restarted: ${recent.length} restarts in the last ${limits.copyRestartWindowMs / 1000} s. Restart npm start to bring it back.`);
      return;
    }
    this.restartsMs.set(name, [...recent, nowMs]);
    this.options.log(`${name} exited (${how}); restarting it in ${limits.copyRestartDelayMs} ms as standby (restart ${recent.length + 1} of at most ${limits.copyRestartsPerWindowMax} a minute)`);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.active) return;
      const restart = this.options.restart(unitId, copy).then(
        () => this.options.log(`${name} restarted; it rejoins as standby and catches up from the primary`),
        (error: unknown) => {
          this.options.log(`${name} restart failed: ${error instanceof Error ? error.message : String(error)}`);
          this.exited(unitId, copy, 'restart failed');
        },
      );
      this.inflight.add(restart);
      void restart.finally(() => this.inflight.delete(restart));
    }, limits.copyRestartDelayMs);
    this.timers.add(timer);
  }

  /** Supervises again (after Cluster.start). */
  resume(): void {
    this.active = true;
  }

  /** Cancels pending restarts and waits for those already starting, so the caller can stop every process. */
  async stop(): Promise<void> {
    this.active = false;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled([...this.inflight]);
  }
}
