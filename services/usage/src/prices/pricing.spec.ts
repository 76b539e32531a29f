import { COST_SCALE, costUnits, fromUnits, toUnits } from './decimal';
import { PriceBook } from './price-book';

describe('exact decimals', () => {
  it('round-trips decimals in units of 10^-12 and prints the shortest form', () => {
    expect(COST_SCALE).toBe(12);
    expect(toUnits('0.15')).toBe(150_000_000_000n);
    expect(toUnits('12')).toBe(12_000_000_000_000n);
    expect(toUnits('-0.5')).toBe(-500_000_000_000n);
    expect(toUnits('1.500000000000000000')).toBe(1_500_000_000_000n);
    expect(fromUnits(150_000_000_000n)).toBe('0.15');
    expect(fromUnits(0n)).toBe('0');
    expect(fromUnits(-1n)).toBe('-0.000000000001');
    expect(() => toUnits('0.0000000000001')).toThrow(/decimals/);
    expect(() => toUnits('1e-7')).toThrow(/not a decimal/);
  });

  it('multiplies tokens by prices per million without rounding', () => {
    // 812 × 2.5 + 96 × 10 = 2990 per million tokens
    expect(fromUnits(costUnits(812, 96, { inputPerMillion: '2.5', outputPerMillion: '10' }))).toBe('0.00299');
    // the smallest price step on the smallest amount stays exact
    expect(fromUnits(costUnits(1, 0, { inputPerMillion: '0.000001', outputPerMillion: '0' }))).toBe('0.000000000001');
    // float arithmetic would say 0.30000000000000004
    expect(fromUnits(costUnits(100_000, 200_000, { inputPerMillion: '1', outputPerMillion: '1' }))).toBe('0.3');
  });
});

describe(PriceBook.name, () => {
  const at = (iso: string) => new Date(iso);
  const book = new PriceBook([
    {
      id: 'v1',
      provider: 'openai',
      model: 'gpt-4o',
      inputPerMillion: '5',
      outputPerMillion: '15',
      currency: 'USD',
      effectiveFrom: at('2026-01-01T00:00:00Z'),
    },
    {
      id: 'v2',
      provider: 'openai',
      model: 'gpt-4o',
      inputPerMillion: '2.5',
      outputPerMillion: '10',
      currency: 'USD',
      effectiveFrom: at('2026-06-01T00:00:00Z'),
    },
    {
      id: 'cn',
      provider: 'deepseek',
      model: 'chat',
      inputPerMillion: '1',
      outputPerMillion: '2',
      currency: 'CNY',
      effectiveFrom: at('2026-01-01T00:00:00Z'),
    },
  ]);

  it('answers the version in force at a moment: the latest effective_from not after it', () => {
    expect(book.versionAt('openai', 'gpt-4o', at('2025-12-31T23:59:59Z'))).toBeUndefined();
    expect(book.versionAt('openai', 'gpt-4o', at('2026-01-01T00:00:00Z'))?.id).toBe('v1');
    expect(book.versionAt('openai', 'gpt-4o', at('2026-05-31T23:59:59Z'))?.id).toBe('v1');
    expect(book.versionAt('openai', 'gpt-4o', at('2026-06-01T00:00:00Z'))?.id).toBe('v2');
    expect(book.versionAt('OpenAI', 'gpt-4o', at('2026-07-01T00:00:00Z'))).toBeUndefined();
    expect(book.versionAt(null, 'gpt-4o', at('2026-07-01T00:00:00Z'))).toBeUndefined();
  });

  it('prices a request by the version at its start, and leaves an unknown model unpriced, never 0', () => {
    const request = { provider: 'openai', model: 'gpt-4o', inputTokens: 1000, outputTokens: 100 };
    expect(book.price({ ...request, startedAt: at('2026-03-01T00:00:00Z') })).toEqual({
      priceId: 'v1',
      cost: '0.0065',
      currency: 'USD',
    });
    expect(book.price({ ...request, startedAt: at('2026-07-01T00:00:00Z') })).toEqual({
      priceId: 'v2',
      cost: '0.0035',
      currency: 'USD',
    });
    expect(book.price({ ...request, model: 'gpt-5', startedAt: at('2026-07-01T00:00:00Z') })).toEqual({
      priceId: null,
      cost: null,
      currency: null,
    });
  });
});
