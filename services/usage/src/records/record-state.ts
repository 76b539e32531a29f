import { TERMINAL_STATUSES, totalTokensOf, type UsageEvent, type UsageStatus } from '@parley/contracts';
import type { PriceBook } from '../prices/price-book';

/** A usage record as stored (entity property names, so it can be written as it is). */
export interface RecordState {
  botId: string;
  requestId: string;
  sessionId: string | null;
  userId: string | null;
  channel: string | null;
  status: UsageStatus;
  provider: string | null;
  model: string | null;
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  startedAt: Date;
  completedAt: Date | null;
  cost: string | null;
  currency: string | null;
  priceId: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/**
 * What an event did to its record: created it, moved it from `started` to its terminal
 * status, repeated what the record already says (`duplicate`), or arrived too late to
 * change anything (`stale`: a `started` after the end, or a second terminal status).
 */
export type EventOutcome = 'inserted' | 'updated' | 'duplicate' | 'stale';

const isTerminal = (status: UsageStatus) => TERMINAL_STATUSES.includes(status);

/**
 * The status only moves forward: `started` → `completed` or `failed`; the first terminal
 * status wins. `started_at` is fixed by the first report of a request. Prices are applied
 * afterwards (`priced`), since they depend on the final tokens.
 */
export function applyEvent(
  current: RecordState | undefined,
  event: UsageEvent,
  now: Date,
): { state: RecordState; outcome: EventOutcome } {
  if (!current) {
    return {
      outcome: 'inserted',
      state: {
        botId: event.bot_id,
        requestId: event.request_id,
        sessionId: event.session_id ?? null,
        userId: event.user_id ?? null,
        channel: event.channel ?? null,
        status: event.status,
        provider: event.provider ?? null,
        model: event.model ?? null,
        inputTokens: event.input_tokens,
        outputTokens: event.output_tokens,
        totalTokens: totalTokensOf(event),
        startedAt: new Date(event.started_at),
        completedAt: event.completed_at ? new Date(event.completed_at) : null,
        cost: null,
        currency: null,
        priceId: null,
        createdAt: now,
        updatedAt: now,
      },
    };
  }
  if (isTerminal(current.status) || !isTerminal(event.status)) {
    return { state: current, outcome: current.status === event.status ? 'duplicate' : 'stale' };
  }
  return {
    outcome: 'updated',
    state: {
      ...current,
      sessionId: event.session_id ?? current.sessionId,
      userId: event.user_id ?? current.userId,
      channel: event.channel ?? current.channel,
      status: event.status,
      provider: event.provider ?? current.provider,
      model: event.model ?? current.model,
      inputTokens: event.input_tokens,
      outputTokens: event.output_tokens,
      totalTokens: totalTokensOf(event),
      completedAt: event.completed_at ? new Date(event.completed_at) : current.completedAt,
      updatedAt: now,
    },
  };
}

/** The record with the cost of the price in force at its start (or unpriced). */
export function priced(state: RecordState, book: PriceBook): RecordState {
  const pricing = book.price(state);
  return { ...state, cost: pricing.cost, currency: pricing.currency, priceId: pricing.priceId };
}

export const samePricing = (a: RecordState, b: RecordState) =>
  a.priceId === b.priceId && a.cost === b.cost && a.currency === b.currency;
