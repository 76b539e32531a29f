import { z } from 'zod';
import { rpc } from './rpc';

export const UsageTotalsSchema = z.object({
  requests: z.number().int(),
  input_tokens: z.number().int(),
  output_tokens: z.number().int(),
  total_tokens: z.number().int(),
  /** Decimal string; null when nothing in it is priced. */
  cost: z.string().nullable(),
});
export type UsageTotals = z.infer<typeof UsageTotalsSchema>;

export const UsageRpc = {
  /** Totals of one session's usage records; the caller has already established it may read the session. */
  sessionTotals: rpc('usage.totals.session', z.object({ session_id: z.uuid() }), UsageTotalsSchema),
} as const;
