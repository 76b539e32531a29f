import { budgetReached } from './budget-watch';
import { periodOf } from './periods';

describe(periodOf.name, () => {
  it('gives the UTC day or month around a moment', () => {
    const now = new Date('2026-11-24T23:59:59.999Z');
    expect(periodOf('day', now)).toEqual({
      start: new Date('2026-11-24T00:00:00Z'),
      end: new Date('2026-11-25T00:00:00Z'),
    });
    expect(periodOf('month', now)).toEqual({
      start: new Date('2026-11-01T00:00:00Z'),
      end: new Date('2026-12-01T00:00:00Z'),
    });
    expect(periodOf('month', new Date('2026-12-31T12:00:00Z')).end).toEqual(new Date('2027-01-01T00:00:00Z'));
  });
});

describe(budgetReached.name, () => {
  it('is reached at the maximum, by tokens or by cost, and never without a limit', () => {
    expect(budgetReached({ tokens: 999, costUnits: 0n }, { maxTokens: 1000, maxCost: null })).toBe(false);
    expect(budgetReached({ tokens: 1000, costUnits: 0n }, { maxTokens: 1000, maxCost: null })).toBe(true);
    expect(budgetReached({ tokens: 0, costUnits: 9_999_999_999n }, { maxTokens: null, maxCost: '0.01' })).toBe(false);
    expect(budgetReached({ tokens: 0, costUnits: 10_000_000_000n }, { maxTokens: null, maxCost: '0.01' })).toBe(true);
    expect(budgetReached({ tokens: 10 ** 9, costUnits: 10n ** 20n }, { maxTokens: null, maxCost: null })).toBe(false);
  });
});
