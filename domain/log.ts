import { maskCardNumbers } from './pan.js';

// Structured logs: one JSON object per line on stdout. Card numbers never reach a
// log in clear: callers pass maskPan(pan), and as a safety net every line is
// scanned for digit runs that look like a card number (16-19 digits, Luhn-valid)
// and masks them before writing.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const levelRank = { debug: 10, info: 20, warn: 30, error: 40 } as const;

export interface Logger {
  debug(msg: string, fields?: object): void;
  info(msg: string, fields?: object): void;
  warn(msg: string, fields?: object): void;
  error(msg: string, fields?: object): void;
}

export function createLogger(component: string, write: (line: string) => void = (line) => process.stdout.write(line)): Logger {
  const minimum = levelRank[(process.env['LOG_LEVEL'] as LogLevel | undefined) ?? 'info'] ?? levelRank.info;
  const emit = (level: LogLevel, msg: string, fields?: object): void => {
    if (levelRank[level] < minimum) return;
    const line = JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields });
    write(maskCardNumbers(line) + '\n');
  };
  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
  };
}
