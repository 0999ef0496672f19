import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cluster, repoRoot } from './cluster.js';
import { issueCards, syntheticApplicants } from './bulk-issuance.js';

const help = `Usage: npm start [-- options]

Starts the cluster from deploy/topology.json: 4 DSU units, each with a stable
and a gray instance over its store, and the gateway, as separate processes;
waits until all are healthy; loads a demo card portfolio on first start; prints
the endpoints; stops everything on Ctrl-C.

The gray instances run the release named in the topology's "releases.gray"
(2026.12.0-rc1: the cross-border fee lowered by 0.5 percentage point, 1.50% to
1.00% on classic and 1.00% to 0.50% on platinum). They take no traffic until an
operator moves some there: npm run gray -- --help.

  --port           gateway port (default 8080, or PORT from the environment)
  --data-dir       folder for the stores, logs and card file (default deploy/data)
  --demo-accounts  accounts in the demo portfolio (default 2000)
  --no-demo        load no demo portfolio
  --no-gray        start no gray instances
  --fresh          delete the data folder first
  --help           this text`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' }, 'data-dir': { type: 'string' }, 'demo-accounts': { type: 'string', default: '2000' },
      'no-demo': { type: 'boolean' }, 'no-gray': { type: 'boolean' }, fresh: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (values.help === true) {
    process.stdout.write(help + '\n');
    return;
  }
  const root = values['data-dir'] ?? join(repoRoot, 'deploy', 'data');
  if (values.fresh === true) rmSync(root, { recursive: true, force: true });
  const gatewayPort = Number(values.port ?? process.env['PORT'] ?? 8080);
  const cluster = new Cluster({ root, gatewayPort, fixedUnitPorts: true, gray: values['no-gray'] !== true });
  const stop = (): void => {
    process.stdout.write('\nstopping...\n');
    void cluster.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    await cluster.start();
  } catch (error) {
    await cluster.close();
    throw error;
  }
  const cardsPath = join(root, 'cards.ndjson');
  const demoAccounts = Number(values['demo-accounts']);
  if (values['no-demo'] !== true && !existsSync(cardsPath) && demoAccounts > 0) {
    const summary = await issueCards({
      gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(demoAccounts, 1), bands: cluster.topology.issuance.scoreBands,
      currency: cluster.topology.issuance.currency, cardsPath,
    });
    process.stdout.write(`demo portfolio: ${summary.issued} cards issued (${summary.declined} applicants declined by score) in ${summary.seconds.toFixed(1)} s -> ${cardsPath}\n`);
  }
  process.stdout.write(`\ngateway  ${cluster.gatewayUrl}   (POST /v1/authorizations, GET /healthz, GET /metrics, /admin/gray)\n`);
  for (const unit of cluster.topology.units) {
    const gray = unit.gray === undefined ? '' : `   gray ${unit.gray.url}`;
    process.stdout.write(`${unit.id.padEnd(8)} ${unit.url}${gray}   store ${unit.dataDir}\n`);
  }
  const releases = cluster.topology.releases;
  if (releases !== undefined) process.stdout.write(`releases stable ${releases.stable}, gray ${releases.gray} (npm run gray -- status)\n`);
  process.stdout.write(`logs     ${join(root, 'cluster.log')}\ncards    ${cardsPath}\nPress Ctrl-C to stop.\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`start failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
