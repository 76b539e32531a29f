import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';

/**
 * A price version: per million input and output tokens of one provider's model, in force
 * from `effective_from` until the next version of the same model.
 */
export const PriceEntity = defineEntity({
  name: 'Price',
  tableName: 'usage_prices',
  properties: {
    id: p.uuid().primary(),
    provider: p.string().length(64),
    model: p.string().length(128),
    inputPerMillion: p.decimal('string').columnType('numeric'),
    outputPerMillion: p.decimal('string').columnType('numeric'),
    currency: p.string().length(3),
    effectiveFrom: p.datetime(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
  uniques: [{ name: 'usage_prices_version_key', properties: ['provider', 'model', 'effectiveFrom'] }],
});
export type PriceRow = InferEntity<typeof PriceEntity>;

/**
 * Records of one model in a time window whose cost must be computed again because a price
 * version for that window was stored. Worked through in key order; `after*` is the position.
 */
export const RepriceJobEntity = defineEntity({
  name: 'RepriceJob',
  tableName: 'usage_reprice_jobs',
  properties: {
    id: p.uuid().primary(),
    provider: p.string().length(64),
    model: p.string().length(128),
    fromAt: p.datetime(),
    untilAt: p.datetime().nullable(),
    afterStartedAt: p.datetime().nullable(),
    afterBotId: p.uuid().nullable(),
    afterRequestId: p.string().length(200).nullable(),
    createdAt: p.datetime(),
  },
});
export type RepriceJob = InferEntity<typeof RepriceJobEntity>;
