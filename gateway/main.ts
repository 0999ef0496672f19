import { parseArgs } from 'node:util';
import { assertLimits } from '../domain/limits.js';
import { createLogger } from '../domain/log.js';
import { exitWithParent } from '../domain/parent-watch.js';
import { loadTopology } from '../domain/topology.js';
import { GatewayServer } from './server.js';
import { demoAdminToken } from './gray-admin.js';
import { deriveCardKeys, demoCardHashKeyHex } from '../domain/card-protect.js';

const help = `Usage: node dist/gateway/main.js --topology <file> [--port N] [--host H] [--state-dir DIR]

Runs the routing gateway: the single HTTP entry for channels, routing each
account to its DSU unit through the consistent-hash ring of the topology file.
  --topology   topology file (units and their URLs, ring, products) (required)
  --port       port to listen on; 0 picks a free one (default: the topology's gateway port)
  --host       address to listen on (default: the topology's gateway host)
  --state-dir  folder of the gray release state and audit log (default deploy/data/gateway)
Environment:
  ADMIN_TOKEN    bearer token of the admin API (/admin/gray); "${demoAdminToken}" when unset
  CARD_HASH_KEY  hex key of the card-number hash (whitelisted cards are kept hashed) and of the account number enciphered in card numbers (routing of account operations); a demo key when unset
  DSU_ACCOUNT_ID_SEED  integer: draw new account numbers from a seeded sequence (repeatable simulations)
On start it prints one JSON log line with msg "listening" and the port.`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      topology: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, help: { type: 'boolean' },
      'state-dir': { type: 'string', default: 'deploy/data/gateway' },
    },
  });
  if (values.help === true || values.topology === undefined) {
    process.stdout.write(help + '\n');
    process.exit(values.help === true ? 0 : 2);
  }
  assertLimits();
  const log = createLogger('gateway');
  const topology = loadTopology(values.topology);
  const port = values.port !== undefined ? Number(values.port) : topology.file.gateway.port;
  const adminToken = process.env['ADMIN_TOKEN'] ?? demoAdminToken;
  if (process.env['ADMIN_TOKEN'] === undefined) log.warn('ADMIN_TOKEN unset: the admin API takes the demo token (never in production)');
  const cardKeys = deriveCardKeys(process.env['CARD_HASH_KEY'] ?? demoCardHashKeyHex);
  const stateDir = values['state-dir'] ?? 'deploy/data/gateway';
  const seedText = process.env['DSU_ACCOUNT_ID_SEED'];
  const accountIdSeed = seedText === undefined ? null : Number(seedText);
  if (accountIdSeed !== null && !Number.isSafeInteger(accountIdSeed)) throw new Error('DSU_ACCOUNT_ID_SEED is an integer');
  const gateway = new GatewayServer({ host: values.host ?? topology.file.gateway.host, port, topology, log, stateDir, adminToken, cardKeys, accountIdSeed });
  const bound = await gateway.listen();
  log.info('listening', { port: bound, pid: process.pid, units: topology.file.units.map((unit) => unit.id) });
  const stop = (): void => {
    void gateway.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  exitWithParent(stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`gateway failed to start: ${String(error)}\n`);
  process.exit(1);
});
