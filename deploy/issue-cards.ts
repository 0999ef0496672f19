import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadTopology } from '../domain/topology.js';
import { defaultTopologyPath } from './cluster.js';
import { issueCards, parseApplicants } from './bulk-issuance.js';

const help = `Usage: npm run issue-cards -- --file <applicants.csv|json> [options]

Issues cards in bulk from a file of applicants with a credit-evaluation score.
The topology's issuance.scoreBands table maps each score to a credit limit;
applicants below the lowest band are declined. Cards are appended to the card
file (mode 0600): the only place card numbers exist in clear.

  --file        applicants: CSV with header "id,score[,product]" or a JSON array of {id, score, product?} (required)
  --gateway     gateway URL (default http://127.0.0.1:8080)
  --topology    topology file with the score bands (default deploy/topology.json)
  --cards       card file to append to (default deploy/data/cards.ndjson)
  --batch       accounts per request, at most 2000 (default 1000)
  --json        print the summary as one JSON object
  --help        this text`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      file: { type: 'string' }, gateway: { type: 'string', default: 'http://127.0.0.1:8080' },
      topology: { type: 'string', default: defaultTopologyPath }, cards: { type: 'string', default: 'deploy/data/cards.ndjson' },
      batch: { type: 'string', default: '1000' }, json: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (values.help === true || values.file === undefined) {
    process.stdout.write(help + '\n');
    process.exit(values.help === true ? 0 : 2);
  }
  const topology = loadTopology(values.topology as string);
  const format = values.file.endsWith('.json') ? 'json' : 'csv';
  const applicants = parseApplicants(readFileSync(values.file, 'utf8'), format);
  const summary = await issueCards({
    gatewayUrl: values.gateway as string, applicants, bands: topology.file.issuance.scoreBands,
    currency: topology.file.issuance.currency, cardsPath: values.cards as string, batchSize: Number(values.batch),
    onProgress: (done, total) => process.stderr.write(`\rissued ${done}/${total}`),
  });
  process.stderr.write('\n');
  if (values.json === true) process.stdout.write(JSON.stringify(summary) + '\n');
  else process.stdout.write(`applicants ${summary.applicants}, issued ${summary.issued}, declined by score ${summary.declined}, failed ${summary.failed}, ${summary.seconds.toFixed(2)} s, ${Math.round(summary.cardsPerSecond)} cards/s\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`issue-cards: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
