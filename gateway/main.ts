import { parseArgs } from 'node:util';
import { assertLimits } from '../domain/limits.js';
import { createLogger } from '../domain/log.js';
import { exitWithParent } from '../domain/parent-watch.js';
import { loadTopology } from '../domain/topology.js';
import { GatewayServer } from './server.js';

const help = `Usage: node dist/gateway/main.js --topology <file> [--port N] [--host H]

Runs the routing gateway: the single HTTP entry for channels, routing each
account to its DSU unit through the consistent-hash ring of the topology file.
  --topology   topology file (units and their URLs, ring, products) (required)
  --port       port to listen on; 0 picks a free one (default: the topology's gateway port)
  --host       address to listen on (default: the topology's gateway host)
On start it prints one JSON log line with msg "listening" and the port.`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { topology: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help === true || values.topology === undefined) {
    process.stdout.write(help + '\n');
    process.exit(values.help === true ? 0 : 2);
  }
  assertLimits();
  const log = createLogger('gateway');
  const topology = loadTopology(values.topology);
  const port = values.port !== undefined ? Number(values.port) : topology.file.gateway.port;
  const gateway = new GatewayServer({ host: values.host ?? topology.file.gateway.host, port, topology, log });
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
