import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { demoAdminToken } from '../gateway/admin-auth.js';
import { limits } from '../domain/limits.js';
import type { TopologyFile } from '../domain/topology.js';
import { Cluster, defaultTopologyPath, repoRoot } from './cluster.js';
import { issueCards, syntheticApplicants, type IssuedCard } from './bulk-issuance.js';
import { readCompleteLines } from '../domain/durable-file.js';

const help = `Usage: npm start [-- options]

Starts the cluster from deploy/topology.json: 4 DSU units, each with a stable
and a gray instance over its store, and the gateway, as separate processes;
waits until all are healthy; loads a demo card portfolio on first start; prints
the endpoints; stops everything on Ctrl-C.

The gray instances run the release named in the topology's "releases.gray"
(2026.12.0-rc1: the cross-border fee lowered by 0.5 percentage point, 1.50% to
1.00% on classic and 1.00% to 0.50% on platinum). They take no traffic until an
operator moves some there: npm run gray -- --help.

With --ha every unit runs as an HA pair instead: a second copy with its own
store (deploy/data/dsu-N-b, ports 8301-8304, the topology's "standbyPort"); the
gateway promotes one copy per unit to primary and fails over to the other when
the primary dies. A copy that dies (kill -9, or the load tester's kill-unit
hook) is restarted after ${limits.copyRestartDelayMs / 1000} s, at most ${limits.copyRestartsPerWindowMax} times a minute, and rejoins as
standby. Try it: npm run loadtest -- --scenario unit-kill. --ha starts no gray
instances: a gray instance would write to one copy's store only, and its
commits would not reach the other copy.

  --port           gateway port (default PORT from the environment, else the topology's: 8080)
  --data-dir       folder for the stores, logs and card file (default deploy/data)
  --topology       topology file to start from, e.g. a copy with other ports (default deploy/topology.json)
  --demo-accounts  accounts in the demo portfolio (default 2000)
  --no-demo        load no demo portfolio
  --no-gray        start no gray instances
  --ha             run every unit as an HA pair (primary and standby copy); implies --no-gray
  --fresh          delete the data folder first
  --help           this text`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' }, 'data-dir': { type: 'string' }, topology: { type: 'string', default: defaultTopologyPath }, 'demo-accounts': { type: 'string', default: '2000' },
      'no-demo': { type: 'boolean' }, 'no-gray': { type: 'boolean' }, ha: { type: 'boolean' }, fresh: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (values.help === true) {
    process.stdout.write(help + '\n');
    return;
  }
  const root = values['data-dir'] ?? join(repoRoot, 'deploy', 'data');
  if (values.fresh === true) rmSync(root, { recursive: true, force: true });
  const base = JSON.parse(readFileSync(values.topology, 'utf8')) as TopologyFile;
  const gatewayPort = Number(values.port ?? process.env['PORT'] ?? base.gateway.port);
  const ha = values.ha === true;
  // A unit runs a gray instance or a standby, not both (domain/topology.ts): the gray
  // instance's commits would land in one copy's store and never reach the other.
  if (ha && values['no-gray'] !== true) process.stdout.write('--ha: starting no gray instances (a unit runs a gray instance or an HA standby, not both)\n');
  // Checked before anything starts: a typo must not leave a cluster without its demo portfolio.
  if (!/^[0-9]+$/.test(values['demo-accounts'] ?? '')) throw new Error(`--demo-accounts must be a whole number, got "${values['demo-accounts']}"`);
  const demoAccounts = Number(values['demo-accounts']);
  const cluster = new Cluster({
    root, gatewayPort, fixedUnitPorts: true, base, gray: !ha && values['no-gray'] !== true, ha, superviseCopies: ha,
    onLauncherLine: (line) => process.stdout.write(`[launcher] ${line}\n`),
  });
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

  if (values['no-demo'] !== true && !existsSync(cardsPath) && demoAccounts > 0) {
    // Issued into a file of its own, renamed into place once whole: a start stopped
    // halfway leaves no partial portfolio that the next start would take for done.
    // The next start goes on from the cards written (the applicants are the same,
    // seeded): issuing them again would open their accounts a second time and lose
    // the cards of the first. Accounts whose batch was in flight at the stop have no
    // card in the file: an account's card number and CVV exist in clear only in the
    // answer that opened it, so they cannot be asked for again.
    const partial = `${cardsPath}.partial`;
    const applicants = syntheticApplicants(demoAccounts, 1);
    const written = resumableCards(partial, new Set(applicants.map((applicant) => applicant.id)));
    const summary = await issueCards({
      gatewayUrl: cluster.gatewayUrl, applicants: applicants.filter((applicant) => !written.has(applicant.id)),
      bands: cluster.topology.issuance.scoreBands, currency: cluster.topology.issuance.currency, cardsPath: partial,
    });
    renameSync(partial, cardsPath);
    const resumed = written.size === 0 ? '' : ` after the ${written.size} of a start stopped halfway`;
    process.stdout.write(`demo portfolio: ${summary.issued} cards issued${resumed} (${summary.declined} applicants declined by score) in ${summary.seconds.toFixed(1)} s -> ${cardsPath}\n`);
  }
  process.stdout.write(`\ngateway  ${cluster.gatewayUrl}   (POST /v1/authorizations, GET /healthz, GET /metrics, /admin/gray${ha ? ', /admin/ha' : ''})\n`);
  if (ha) await printPairs(cluster);
  else {
    for (const unit of cluster.topology.units) {
      const gray = unit.gray === undefined ? '' : `   gray ${unit.gray.url}`;
      process.stdout.write(`${unit.id.padEnd(8)} ${unit.url}${gray}   store ${unit.dataDir}\n`);
    }
  }
  const releases = cluster.topology.releases;
  if (releases !== undefined && !ha && values['no-gray'] !== true) process.stdout.write(`releases stable ${releases.stable}, gray ${releases.gray} (npm run gray -- status)\n`);
  process.stdout.write(`logs     ${join(root, 'cluster.log')}\ncards    ${cardsPath}\nPress Ctrl-C to stop.\n`);
}

/**
 * The applicants whose cards a stopped start wrote to `partial`, keeping only lines
 * that are a card of one of this start's applicants (once each). Anything else (a
 * line garbled by a crash of the machine, a card of another --demo-accounts) is
 * dropped from the file, so the portfolio ends as exactly this start's cards; the
 * accounts behind dropped lines stay in the units without a card, as do those of
 * batches in flight at the stop.
 */
function resumableCards(partial: string, applicantIds: ReadonlySet<string>): Set<string> {
  const kept: string[] = [];
  const written = new Set<string>();
  const lines = readCompleteLines(partial);
  for (const line of lines) {
    let card: Partial<IssuedCard> | null = null;
    try {
      card = JSON.parse(line) as Partial<IssuedCard> | null;
    } catch {
      card = null;
    }
    const id = card?.applicantId;
    if (typeof id !== 'string' || !applicantIds.has(id) || written.has(id) || typeof card?.pan !== 'string') continue;
    written.add(id);
    kept.push(line);
  }
  if (kept.length < lines.length) {
    process.stdout.write(`demo portfolio: ${lines.length - kept.length} lines of ${partial} are not cards of this portfolio; dropped\n`);
    const rewritten = `${partial}.rewrite`;
    writeFileSync(rewritten, kept.map((line) => `${line}\n`).join(''), { mode: 0o600 });
    renameSync(rewritten, partial);
  }
  return written;
}

/** Each HA unit's copies with the role the gateway gave them (GET /admin/ha). */
async function printPairs(cluster: Cluster): Promise<void> {
  const response = await fetch(`${cluster.gatewayUrl}/admin/ha`, { headers: { authorization: `Bearer ${process.env['ADMIN_TOKEN'] ?? demoAdminToken}` } });
  const status = (await response.json()) as { units: Array<{ unit: string; primary: string | null }> };
  for (const unit of cluster.topology.units) {
    const primary = status.units.find((each) => each.unit === unit.id)?.primary ?? null;
    const copies = [{ url: unit.url, dataDir: unit.dataDir }, { url: unit.standby?.url ?? '', dataDir: unit.standby?.dataDir ?? '' }];
    const described = copies.map((copy) => `${copy.url === primary ? 'primary' : 'standby'} ${copy.url}`).join('   ');
    process.stdout.write(`${unit.id.padEnd(8)} ${described}   stores ${copies.map((copy) => copy.dataDir).join(', ')}\n`);
  }
  process.stdout.write('HA       roles: GET /admin/ha; planned switch: POST /admin/ha/switch {"unit"}; failover under load: npm run loadtest -- --scenario unit-kill\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`start failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
