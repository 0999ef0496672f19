import { writeUnitFixture, type FixtureOptions, type FixtureResult } from './fixture.js';

// Piscina worker: writes one unit's benchmark fixture.
export default function run(options: FixtureOptions): FixtureResult {
  return writeUnitFixture(options);
}
