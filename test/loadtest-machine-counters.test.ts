import { describe, expect, it } from 'vitest';
import { machineDelta, parseCpuLine, parseSectorsWritten, readMachineCounters } from '../loadtest/machine-counters.js';

// The machine counters a benchmark phase records: parsed from sample /proc text,
// read from this machine, and the delta computed from counters the test chooses.

const statSample = 'cpu  345456 8240 104370 377830 28247 0 23540 202 0 0\ncpu0 172000 4000 52000 189000 14000 0 11000 100 0 0\nintr 1 2 3\n';
const diskstatsSample = [
  ' 254       0 vda 273841 5749 7898506 84070 42343325 324492 1066799736 25112345 0 756508 25269551 70181 62 263034888 47560 2826157 179015',
  ' 254       1 vda1 1000 0 2000 10 5000 0 999999 10 0 0 0 0 0 0 0 0 0',
  '   7       0 loop0 10 0 20 0 30 0 777777 0 0 0 0 0 0 0 0 0 0',
  ' 252       0 zram0 5 0 40 0 8 0 888888 0 0 0 0 0 0 0 0 0 0',
].join('\n');

describe('machine counters', () => {
  it('parses the aggregate cpu line and the sectors written by the disks named', () => {
    expect(parseCpuLine(statSample)).toEqual([345456, 8240, 104370, 377830, 28247, 0, 23540, 202]);
    expect(() => parseCpuLine('intr 1 2 3\n')).toThrow(/cpu line/);
    // The partition, the loop device and the compressed swap in memory are not the disk.
    expect(parseSectorsWritten(diskstatsSample, new Set(['vda']))).toBe(1066799736);
    expect(parseSectorsWritten(diskstatsSample, new Set(['vda', 'zram0']))).toBe(1066799736 + 888888);
  });

  it('reads this machine\'s counters', () => {
    const counters = readMachineCounters();
    expect(counters.cpuTicks).toHaveLength(8);
    for (const ticks of counters.cpuTicks) expect(Number.isInteger(ticks) && ticks >= 0).toBe(true);
    expect(Number.isInteger(counters.sectorsWritten) && counters.sectorsWritten >= 0).toBe(true);
  });

  it('turns two readings into percentages of all CPU time and megabytes written', () => {
    const before = { cpuTicks: [100, 0, 50, 800, 20, 0, 10, 0], sectorsWritten: 1_000 };
    // 1,000 ticks later: 300 user, 100 system, 500 idle, 60 iowait, 20 softirq, 20 steal.
    const after = { cpuTicks: [400, 0, 150, 1_300, 80, 0, 30, 20], sectorsWritten: 1_000 + 2 * 1_000_000 };
    expect(machineDelta(before, after)).toEqual({ busyPercent: 42, iowaitPercent: 6, stealPercent: 2, diskWrittenMB: 1024 });
    // An iowait counter that went backwards counts as no iowait, not as negative time.
    const backwards = { cpuTicks: [400, 0, 150, 1_300, 10, 0, 30, 20], sectorsWritten: 1_000 };
    expect(machineDelta(before, backwards)).toEqual({ busyPercent: 44.7, iowaitPercent: 0, stealPercent: 2.1, diskWrittenMB: 0 });
  });
});
