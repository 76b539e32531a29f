import { costUnits, fromUnits } from './decimal';

export interface PriceVersion {
  id: string;
  provider: string;
  model: string;
  inputPerMillion: string;
  outputPerMillion: string;
  currency: string;
  effectiveFrom: Date;
}

export interface Pricing {
  priceId: string | null;
  cost: string | null;
  currency: string | null;
}

const UNPRICED: Pricing = { priceId: null, cost: null, currency: null };
const modelKey = (provider: string, model: string) => `${provider}\u0000${model}`;

/** The versions of some models' prices, answering which one was in force at a moment. */
export class PriceBook {
  private readonly versions = new Map<string, PriceVersion[]>();

  constructor(prices: PriceVersion[]) {
    for (const price of prices) {
      const key = modelKey(price.provider, price.model);
      const list = this.versions.get(key) ?? [];
      list.push(price);
      this.versions.set(key, list);
    }
    for (const list of this.versions.values()) {
      list.sort((a, b) => b.effectiveFrom.getTime() - a.effectiveFrom.getTime());
    }
  }

  /** The version in force at `at`: the latest whose `effective_from` is not after it. */
  versionAt(provider: string | null, model: string | null, at: Date): PriceVersion | undefined {
    if (!provider || !model) return undefined;
    return this.versions.get(modelKey(provider, model))?.find((v) => v.effectiveFrom.getTime() <= at.getTime());
  }

  /** The cost of a request: tokens times the price in force at its start, or unpriced. */
  price(record: {
    provider: string | null;
    model: string | null;
    startedAt: Date;
    inputTokens: number;
    outputTokens: number;
  }): Pricing {
    const version = this.versionAt(record.provider, record.model, record.startedAt);
    if (!version) return UNPRICED;
    return {
      priceId: version.id,
      cost: fromUnits(costUnits(record.inputTokens, record.outputTokens, version)),
      currency: version.currency,
    };
  }
}
