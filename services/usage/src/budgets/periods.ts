import type { BudgetPeriod } from '@parley/contracts';

/** The UTC period containing `now`: [start, end). */
export function periodOf(period: BudgetPeriod, now: Date): { start: Date; end: Date } {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  if (period === 'day') {
    const start = new Date(Date.UTC(y, m, now.getUTCDate()));
    return { start, end: new Date(start.getTime() + 24 * 60 * 60 * 1000) };
  }
  return { start: new Date(Date.UTC(y, m, 1)), end: new Date(Date.UTC(y, m + 1, 1)) };
}

/** The UTC day (YYYY-MM-DD) of a moment. */
export const dayOf = (t: Date) => t.toISOString().slice(0, 10);
