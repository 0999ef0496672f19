// Probe: fsync against fdatasync for a commit as the units' WAL makes one (7 pages, each
// written as a 24-byte frame header and the rest of the page, overwriting a file already
// allocated), alternated: wall time (mean, p50, p99), user and system CPU, and what the
// disk was asked to write per commit (/proc/diskstats of vda). SQLite as better-sqlite3
// builds it calls fsync (no HAVE_FDATASYNC); this says whether fdatasync would be cheaper here.
// env: COMMITS (3000 per run), ROUNDS (3), DISK (vda). Writes a scratch file in the working directory.
import { closeSync, fdatasyncSync, fsyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';

const commits = Number(process.env.COMMITS ?? 3000);
const rounds = Number(process.env.ROUNDS ?? 3);
const disk = process.env.DISK ?? 'vda';
const file = `.sync-kind-${process.pid}.bin`;
const page = Buffer.alloc(4096, 1);
const diskCounters = () => {
  const fields = readFileSync('/proc/diskstats', 'utf8').split('\n').map((line) => line.trim().split(/\s+/)).find((f) => f[2] === disk);
  return { writes: Number(fields[7]), sectors: Number(fields[9]) };
};
const fd = openSync(file, 'w');
try {
  for (let i = 0; i < 1024; i++) writeSync(fd, page, 0, 4096, i * 4096);
  fsyncSync(fd);
  let slot = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const [kind, sync] of [['fsync', fsyncSync], ['fdatasync', fdatasyncSync]]) {
      const latencies = [];
      const before = diskCounters();
      const cpu = process.cpuUsage();
      const started = performance.now();
      for (let i = 0; i < commits; i++) {
        const t = performance.now();
        for (let p = 0; p < 7; p++) {
          const position = (slot++ % 1000) * 4096;
          writeSync(fd, page, 0, 24, position);
          writeSync(fd, page, 0, 4072, position + 24);
        }
        sync(fd);
        latencies.push(performance.now() - t);
      }
      const wallUs = ((performance.now() - started) * 1000) / commits;
      const used = process.cpuUsage(cpu);
      const after = diskCounters();
      latencies.sort((a, b) => a - b);
      const at = (q) => (latencies[Math.floor(q * commits)] * 1000).toFixed(0);
      console.log(`round ${round} ${kind.padEnd(9)} wall ${wallUs.toFixed(0)} us (p50 ${at(0.5)}, p99 ${at(0.99)}), user ${(used.user / commits).toFixed(0)} us, `
        + `system ${(used.system / commits).toFixed(0)} us; disk ${(((after.sectors - before.sectors) * 512) / commits / 1024).toFixed(1)} KB in ${((after.writes - before.writes) / commits).toFixed(2)} writes per commit`);
    }
  }
} finally {
  closeSync(fd);
  rmSync(file);
}
