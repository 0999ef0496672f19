import { parseArgs } from 'node:util';
import { deriveCardKeys, demoCardHashKeyHex } from '../domain/card-protect.js';
import { assertLimits } from '../domain/limits.js';
import { createLogger } from '../domain/log.js';
import { exitWithParent } from '../domain/parent-watch.js';
import { loadTopology } from '../domain/topology.js';
import { UnitServer } from './server.js';

const help = `Usage: node dist/units/main.js --id <unitId> --topology <file> [--port N] [--host H] [--data-dir DIR]
                                [--role stable|gray] [--release NAME]

Runs one DSU unit instance: an HTTP server over the unit's SQLite store. A unit
may run two instances over the same store, a stable and a gray one (gray release).
  --id         unit id, as named in the topology file (required)
  --topology   topology file with products and exchange rates (required)
  --port       port to listen on; 0 picks a free one (default: the topology's port for this unit)
  --host       address to listen on (default 127.0.0.1)
  --data-dir   folder of the unit's store (default: the topology's dataDir for this unit)
  --role       version for operations that carry no version tag (default stable);
               the port defaults to the unit's gray port with --role gray
  --release    release to run: its parameter changes come from the topology's
               "releases" section (default: the topology's release for the role)
  --ha         a member of an HA pair: starts as standby, takes writes only once
               the gateway promotes it, and replicates to its standby as primary
Environment: CARD_HASH_KEY (hex, >= 16 bytes) keys the card-number and CVV hashes and the account number enciphered in card numbers; a demo key is used when unset.
On start it prints one JSON log line with msg "listening" and the port.`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      id: { type: 'string' }, topology: { type: 'string' }, port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' }, 'data-dir': { type: 'string' }, help: { type: 'boolean' },
      role: { type: 'string', default: 'stable' }, release: { type: 'string' }, ha: { type: 'boolean' },
    },
  });
  if (values.help === true || values.id === undefined || values.topology === undefined) {
    process.stdout.write(help + '\n');
    process.exit(values.help === true ? 0 : 2);
  }
  assertLimits();
  const log = createLogger('unit');
  const topology = loadTopology(values.topology);
  const spec = topology.file.units.find((unit) => unit.id === values.id);
  const role = values.role;
  if (role !== 'stable' && role !== 'gray') throw new Error('--role is stable or gray');
  const release = values.release ?? topology.file.releases?.[role] ?? 'base';
  const port = values.port !== undefined ? Number(values.port) : role === 'gray' ? spec?.gray?.port : spec?.port;
  const dataDir = values['data-dir'] ?? spec?.dataDir;
  if (port === undefined || dataDir === undefined) throw new Error(`unit ${values.id} is not in the topology; pass --port and --data-dir`);
  const keyHex = process.env['CARD_HASH_KEY'] ?? demoCardHashKeyHex;
  if (process.env['CARD_HASH_KEY'] === undefined) log.warn('CARD_HASH_KEY unset: using the demo key (never in production)');
  const server = new UnitServer({ unitId: values.id, host: values.host ?? '127.0.0.1', port, dataDir, topology, keys: deriveCardKeys(keyHex), log, role, release, ha: values.ha === true });
  const bound = await server.listen();
  log.info('listening', { unit: values.id, role, release, port: bound, pid: process.pid });
  const stop = (): void => {
    void server.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  exitWithParent(stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`unit failed to start: ${String(error)}\n`);
  process.exit(1);
});
