import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// One end-of-day run at a time over a folder of ledgers. Two runs over the same
// ledgers (`batch schedule` beside a manual `batch eod`, or beside the load
// tester's batch hook) would each read a step's progress before the other wrote
// it, and apply the same feed page or accrue the same day twice. The lock is a
// file created exclusively, holding the owner's pid; a run killed with -9 leaves it
// behind, and the next run takes it over once that pid is gone. (A pid reused by
// an unrelated process in the meantime keeps the lock until that process ends:
// the run then says which pid holds it, and the operator can remove the file.)

export class BatchBusyError extends Error {}

/** Folders this process holds, so that a second run in the same process is refused too. */
const held = new Set<string>();

/** Takes the lock of batchRoot, or throws BatchBusyError naming its holder; returns the release. */
export function lockBatchRoot(batchRoot: string): () => void {
  mkdirSync(batchRoot, { recursive: true });
  const path = join(batchRoot, 'run.lock');
  if (held.has(path)) throw new BatchBusyError(`another end of day of this process runs over ${batchRoot}`);
  // The pid is written to a file of this process's own, then linked into place: the
  // lock appears with its owner in it, so a run never finds it empty and takes it over.
  const mine = `${path}.${process.pid}`;
  writeFileSync(mine, String(process.pid), { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(mine, path);
        held.add(path);
        return () => {
          held.delete(path);
          // Only a lock that is still this run's own is removed.
          if (ownerOf(path) === process.pid) rmSync(path, { force: true });
        };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const owner = ownerOf(path);
        if (owner === null || (owner !== process.pid && isAlive(owner))) {
          throw new BatchBusyError(`another end of day (pid ${owner ?? 'unreadable'}) runs over ${batchRoot}; if it is gone, remove ${path}`);
        }
        // Left by a run that died (or by this process before an exec): take it over.
        rmSync(path, { force: true });
      }
    }
  } finally {
    rmSync(mine, { force: true });
  }
  throw new BatchBusyError(`could not take ${path}: another run took it at the same moment`);
}

function ownerOf(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
