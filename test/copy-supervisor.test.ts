import { afterEach, describe, expect, it, vi } from 'vitest';
import { CopySupervisor, restartsInWindow } from '../deploy/copy-supervisor.js';
import { limits } from '../domain/limits.js';

// The launcher's supervision of HA copies (npm start -- --ha) with a fake clock:
// the restart delay, the bound per copy and window, and that stop() cancels.

afterEach(() => {
  vi.useRealTimers();
});

function supervisor(restarted: string[], lines: string[], fail = false): CopySupervisor {
  return new CopySupervisor({
    restart: async (unitId, copy) => {
      restarted.push(`${unitId}/${copy}`);
      if (fail) throw new Error('port in use');
    },
    log: (line) => lines.push(line),
    nowMs: () => Date.now(),
  });
}

describe('copy supervisor', () => {
  it('keeps the restarts of the last window only', () => {
    expect(restartsInWindow([0, 1_000, 59_999, 60_000], 60_000)).toEqual([1_000, 59_999, 60_000]);
    expect(restartsInWindow([], 5)).toEqual([]);
  });

  it('restarts a copy after the delay, at most copyRestartsPerWindowMax times a window', async () => {
    vi.useFakeTimers();
    const restarted: string[] = [];
    const lines: string[] = [];
    const watcher = supervisor(restarted, lines);
    watcher.exited('dsu-1', 'a', 'SIGKILL');
    await vi.advanceTimersByTimeAsync(limits.copyRestartDelayMs - 1);
    expect(restarted).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(restarted).toEqual(['dsu-1/a']);
    for (let i = 1; i < limits.copyRestartsPerWindowMax; i++) {
      watcher.exited('dsu-1', 'a', 'SIGKILL');
      await vi.advanceTimersByTimeAsync(limits.copyRestartDelayMs);
    }
    expect(restarted).toHaveLength(limits.copyRestartsPerWindowMax);
    watcher.exited('dsu-1', 'a', 'SIGKILL');
    await vi.advanceTimersByTimeAsync(limits.copyRestartDelayMs);
    expect(restarted).toHaveLength(limits.copyRestartsPerWindowMax);
    expect(lines.at(-1)).toMatch(/dsu-1\/a exited \(SIGKILL\); NOT restarted: 5 restarts in the last 60 s/);
    // The other copy has its own count, and after the window the first copy may restart again.
    watcher.exited('dsu-1', 'b', 'exit code 1');
    await vi.advanceTimersByTimeAsync(limits.copyRestartWindowMs);
    watcher.exited('dsu-1', 'a', 'SIGKILL');
    await vi.advanceTimersByTimeAsync(limits.copyRestartDelayMs);
    expect(restarted.slice(limits.copyRestartsPerWindowMax)).toEqual(['dsu-1/b', 'dsu-1/a']);
  });

  it('retries a restart that failed, within the same bound', async () => {
    vi.useFakeTimers();
    const restarted: string[] = [];
    const lines: string[] = [];
    const watcher = supervisor(restarted, lines, true);
    watcher.exited('dsu-2', 'b', 'SIGKILL');
    await vi.advanceTimersByTimeAsync(limits.copyRestartDelayMs * (limits.copyRestartsPerWindowMax + 2));
    expect(restarted).toHaveLength(limits.copyRestartsPerWindowMax);
    expect(lines.filter((line) => line.includes('restart failed: port in use'))).toHaveLength(limits.copyRestartsPerWindowMax);
    expect(lines.at(-1)).toMatch(/NOT restarted/);
  });

  it('restarts nothing once stopped, until resumed', async () => {
    vi.useFakeTimers();
    const restarted: string[] = [];
    const watcher = supervisor(restarted, []);
    watcher.exited('dsu-1', 'a', 'SIGKILL');
    await watcher.stop();
    watcher.exited('dsu-1', 'b', 'SIGKILL');
    await vi.advanceTimersByTimeAsync(limits.copyRestartDelayMs * 2);
    expect(restarted).toEqual([]);
    watcher.resume();
    watcher.exited('dsu-1', 'b', 'SIGKILL');
    await vi.advanceTimersByTimeAsync(limits.copyRestartDelayMs);
    expect(restarted).toEqual(['dsu-1/b']);
  });
});
