import { readdirSync, readFileSync } from 'node:fs';

// The machine's own counters around a measured phase (Linux /proc): how busy both
// cores were, how much of the time the CPUs waited for I/O or were taken by the
// hypervisor (steal), and how much the disks wrote. A benchmark's figure that moves
// with these moved with the machine, or with work the system under test left to the
// kernel (a checkpoint's write-back shows as disk writes and iowait, not as a
// process's CPU).

export interface MachineCounters {
  /** /proc/stat's first line: user, nice, system, idle, iowait, irq, softirq, steal (ticks). */
  cpuTicks: number[];
  /** Sectors of 512 bytes written to the block devices that are disks. */
  sectorsWritten: number;
}

export interface MachineDelta {
  /** Percent of all CPUs' time busy (neither idle nor waiting for I/O). */
  busyPercent: number;
  iowaitPercent: number;
  stealPercent: number;
  diskWrittenMB: number;
}

/** Block devices that are disks, not loop devices, RAM disks or compressed swap in memory. */
const diskPattern = /^(?:sd|vd|xvd|hd|nvme|mmcblk)/;

export function readMachineCounters(): MachineCounters {
  const cpuLine = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const cpuTicks = cpuLine.trim().split(/\s+/).slice(1, 9).map(Number);
  const disks = new Set(readdirSync('/sys/block').filter((name) => diskPattern.test(name)));
  let sectorsWritten = 0;
  for (const line of readFileSync('/proc/diskstats', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    // Field 3 is the device name, field 10 the sectors written.
    if (fields.length > 9 && disks.has(fields[2] as string)) sectorsWritten += Number(fields[9]);
  }
  return { cpuTicks, sectorsWritten };
}

export function machineDelta(before: MachineCounters, after: MachineCounters): MachineDelta {
  const ticks = after.cpuTicks.map((value, index) => value - (before.cpuTicks[index] ?? 0));
  const total = Math.max(1, ticks.reduce((sum, value) => sum + value, 0));
  const [idle, iowait, steal] = [ticks[3] ?? 0, ticks[4] ?? 0, ticks[7] ?? 0];
  const percent = (value: number): number => Math.round((1000 * value) / total) / 10;
  return {
    busyPercent: percent(total - idle - iowait),
    iowaitPercent: percent(iowait),
    stealPercent: percent(steal),
    diskWrittenMB: Math.round(((after.sectorsWritten - before.sectorsWritten) * 512) / 1e5) / 10,
  };
}
