import { closeSync, existsSync, fsyncSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

// Files that are the only durable record of something (stand-in advices, the gray
// release state and audit): a file's fsync makes its bytes durable, not its name. A
// file just created, or renamed into place, survives a power loss only once its
// folder is fsynced too.

/** fsyncs the folder that holds path, so that a name created or renamed in it is durable. */
export function fsyncDirectory(path: string): void {
  const fd = openSync(dirname(path), 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Appends text to path and makes it durable (the folder too when the append created the file). */
export function appendDurably(path: string, text: string): void {
  const created = !existsSync(path);
  const fd = openSync(path, 'a', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (created) fsyncDirectory(path);
}

/**
 * The complete lines of an append-only file written by appendDurably. A crash in
 * the middle of an append leaves a torn last line (no newline): it was never
 * acknowledged, and it is cut off here, durably, so that the next append starts a
 * line of its own instead of being glued onto it and lost with it at the next read.
 */
export function readCompleteLines(path: string): string[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  const end = text.lastIndexOf('\n') + 1;
  if (end < text.length) {
    truncateSync(path, Buffer.byteLength(text.slice(0, end)));
    const fd = openSync(path, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  return text.slice(0, end).split('\n').filter((line) => line.length > 0);
}
