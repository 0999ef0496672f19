import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../deploy/cluster.js';
import { calendarOf } from '../domain/authorize-rules.js';
import { loadTopology } from '../domain/topology.js';
import { registerHookAction } from '../loadtest/hooks.js';
import { addDays, isBusinessDate } from './accounting-rules.js';
import { partitionsDefault, runEndOfDay } from './end-of-day.js';

// Load-test hook "batch-start": runs end of day while the load goes on, so the
// report shows what the batch window does to live authorization traffic.
// Load it with: npm run loadtest -- --scenario batch-window --register ./dist/batch/loadtest-hooks.js

registerHookAction('batch-start', {
  description: 'run end of day in the load tester: args {date? (default yesterday by the bank clock), topology?, batchDir?, threads? (1)}',
  validateArgs: (args) => {
    if (args['date'] !== undefined && !isBusinessDate(args['date'])) return 'date is YYYY-MM-DD, a date of the calendar';
    if (args['threads'] !== undefined && (!Number.isInteger(args['threads']) || (args['threads'] as number) < 1)) return 'threads is a positive integer';
    return null;
  },
  run: async (args, context) => {
    const generated = join(repoRoot, 'deploy/data/topology.json');
    const topologyPath = typeof args['topology'] === 'string' ? args['topology'] : existsSync(generated) ? generated : join(repoRoot, 'deploy/topology.json');
    const topology = loadTopology(topologyPath);
    const today = calendarOf(Date.now(), topology.file.businessDayUtcOffsetMinutes).day;
    const date = typeof args['date'] === 'string' ? args['date'] : addDays(today, -1);
    context.log(`end of day ${date} started`);
    const result = await runEndOfDay({
      topology: topology.file, topologyPath, date, partitions: partitionsDefault,
      batchRoot: typeof args['batchDir'] === 'string' ? args['batchDir'] : join(repoRoot, 'deploy/data/batch'),
      threads: typeof args['threads'] === 'number' ? args['threads'] : 1,
    });
    return `end of day ${date}: ${result.seconds.toFixed(1)} s, ${result.mismatches} mismatches`;
  },
});
