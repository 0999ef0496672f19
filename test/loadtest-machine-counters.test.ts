import { describe, expect, it } from 'vitest';
import { machineDelta, readMachineCounters } from '../loadtest/machine-counters.js';

// The machine counters a benchmark phase records: read from this machine's /proc,
// and the delta computed from counters the test chooses.

describe('machine counters', () => {
  it('reads the CPU ticks and the disks\' written sectors of this machine', () => {
    const counters = readMachineCounters();
    expect(counters.cpuTicks).toHaveLength(8);
    for (const ticks of counters.cpuTicks) expect(Number.isInteger(ticks) && ticks >= 0).toBe(true);
    expect(Number.isInteger(counters.sectorsWritten) && counters.sectorsWritten >= 0).toBe(true);
  });

  it('turns two readings into percentages of all CPU time and megabytes written', () => {
    const before = { cpuTicks: [100, 0, 50, 800, 20, 0, 10, 0], sectorsWritten: 1_000 };
    // 1,000 ticks later: 300 user, 100 system, 500 idle, 60 iowait, 20 softirq, 20 steal.
    const after = { cpuTicks: [400, 0, 150, 1_300, 80, 0, 30, 20], sectorsWritten: 1_000 + 2 * 1_000_000 };
    expect(machineDelta(before, after)).toEqual({ busyPercent: 44, iowaitPercent: 6, stealPercent: 2, diskWrittenMB: 1024 });
  });
});
