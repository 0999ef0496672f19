// A process started by the cluster launcher exits when its parent is gone, so a
// crashed test runner or launcher never leaves units holding ports and files.
// Enabled by DSU_EXIT_WITH_PARENT=1 (the launcher sets it).

const parentCheckIntervalMs = 1_000;

export function exitWithParent(onParentGone: () => void): void {
  if (process.env['DSU_EXIT_WITH_PARENT'] !== '1') return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) onParentGone();
  }, parentCheckIntervalMs);
  timer.unref();
}
