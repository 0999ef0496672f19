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
  /** Percent of all CPUs' time doing work: neither idle, nor waiting for I/O, nor taken by the hypervisor. */
  busyPercent: number;
  iowaitPercent: number;
  stealPercent: number;
  diskWrittenMB: number;
}

/** Block devices that are disks, not loop devices, RAM disks or compressed swap in memory. */
const diskPattern = /^(?:sd|vd|xvd|hd|nvme|mmcblk)/;

/** The eight tick counters of /proc/stat's aggregate `cpu` line (guest time is already in user and nice). */
export function parseCpuLine(statText: string): number[] {
  const line = statText.split('\n', 1)[0] ?? '';
  const fields = line.trim().split(/\s+/);
  if (fields[0] !== 'cpu') throw new Error(`/proc/stat does not start with the cpu line: ${line.slice(0, 40)}`);
  return fields.slice(1, 9).map(Number);
}

/** Sectors written, summed over the named devices of a /proc/diskstats text (field 3 the name, field 10 the sectors written). */
export function parseSectorsWritten(diskstatsText: string, disks: ReadonlySet<string>): number {
  let sectors = 0;
  for (const line of diskstatsText.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length > 9 && disks.has(fields[2] as string)) sectors += Number(fields[9]);
  }
  return sectors;
}

export function readMachineCounters(): MachineCounters {
  const disks = new Set(readdirSync('/sys/block').filter((name) => diskPattern.test(name)));
  return {
    cpuTicks: parseCpuLine(readFileSync('/proc/stat', 'utf8')),
    sectorsWritten: parseSectorsWritten(readFileSync('/proc/diskstats', 'utf8'), disks),
  };
}

export function machineDelta(before: MachineCounters, after: MachineCounters): MachineDelta {
  // The kernel's iowait counter may go backwards (Documentation/filesystems/proc.rst): a negative step counts as none.
  const ticks = after.cpuTicks.map((value, index) => Math.max(0, value - (before.cpuTicks[index] ?? 0)));
  const total = Math.max(1, ticks.reduce((sum, value) => sum + value, 0));
  const [idle, iowait, steal] = [ticks[3] ?? 0, ticks[4] ?? 0, ticks[7] ?? 0];
  const percent = (value: number): number => Math.round((1000 * value) / total) / 10;
  return {
    busyPercent: percent(total - idle - iowait - steal),
    iowaitPercent: percent(iowait),
    stealPercent: percent(steal),
    diskWrittenMB: Math.round((Math.max(0, after.sectorsWritten - before.sectorsWritten) * 512) / 1e5) / 10,
  };
}
