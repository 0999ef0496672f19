import { describe, expect, it } from 'vitest';
import { longestUnitSilenceMs, type ChaosAnswer } from '../deploy/chaos.js';

const answer = (unit: string, over: Partial<ChaosAnswer> = {}): ChaosAnswer => ({
  key: 'k', accountId: 'a', unit, approved: true, authorizationId: `${unit}-1`, code: '00', failed: false, standIn: false, attempts: 1, ...over,
});

describe('chaos figures', () => {
  it("measures a unit's longest silence after the fault from its own decisions only", () => {
    const answers = [
      answer('dsu-1'), // before the fault: not counted
      answer('dsu-2'), // another unit
      answer('dsu-1', { standIn: true, authorizationId: 'dsu-1~v1' }), // the gateway in stand-in
      answer('dsu-1', { failed: true, code: '91' }), // a failure
      answer('dsu-1', { approved: false, code: '51', authorizationId: null }), // a decline by the unit: a decision
      answer('dsu-1'),
    ];
    const at = [900, 1_100, 1_500, 2_000, 3_400, 3_450];
    // From the fault (1,000) to the first decision of its own (3,400).
    expect(longestUnitSilenceMs(answers, at, 'dsu-1', 1_000, 3_500)).toBe(2_400);
    // dsu-2 answered at 1,100 and then not again before the load ended.
    expect(longestUnitSilenceMs(answers, at, 'dsu-2', 1_000, 3_500)).toBe(2_400);
    expect(longestUnitSilenceMs(answers, at, 'dsu-2', 1_000, 1_200)).toBe(100);
    // No decision after the fault at all: silent from the fault to the end.
    expect(longestUnitSilenceMs(answers, at, 'dsu-3', 1_000, 3_500)).toBe(2_500);
  });
});
