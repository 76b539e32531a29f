import {
  ActivityEventSchema,
  DEFAULT_EVENT_TIME_LIMITS,
  UsageEventSchema,
  activityEventTimeProblems,
  fieldErrors,
  usageEventTimeProblems,
  type ActivityEvent,
  type ActivityEventInput,
  type EventTimeLimits,
  type FieldError,
  type UsageEvent,
  type UsageEventInput,
} from '@parley/contracts';
import type { z } from 'zod';
import { UsageReportError } from './errors';

/** A usage event as a bot reports it: `bot_id` is the client's own and may be left out. */
export type UsageReport = Omit<UsageEventInput, 'bot_id'> & { bot_id?: string };
/** An activity event as a bot reports it: `bot_id` is the client's own and may be left out. */
export type ActivityReport = Omit<ActivityEventInput, 'bot_id'> & { bot_id?: string };

function validate<S extends z.ZodType>(
  schema: S,
  timeProblems: (event: z.output<S>, now: number, limits: EventTimeLimits) => FieldError[],
  botId: string,
  report: { bot_id?: string },
): z.output<S> {
  if (typeof report !== 'object' || report === null || Array.isArray(report)) {
    throw new UsageReportError([{ field: '(root)', message: 'must be an object' }]);
  }
  const problems: FieldError[] = [];
  if (report.bot_id !== undefined && report.bot_id !== botId) {
    problems.push({ field: 'bot_id', message: `must be this client's bot ${botId}` });
  }
  const parsed = schema.safeParse({ ...report, bot_id: botId });
  if (!parsed.success) {
    problems.push(...fieldErrors(parsed.error));
  } else {
    problems.push(...timeProblems(parsed.data, Date.now(), DEFAULT_EVENT_TIME_LIMITS));
  }
  if (problems.length > 0) throw new UsageReportError(problems);
  return parsed.data as z.output<S>;
}

/** The usage event to publish, or a UsageReportError listing every problem. */
export const validateUsage = (botId: string, report: UsageReport): UsageEvent =>
  validate(UsageEventSchema, usageEventTimeProblems, botId, report);

/** The activity event to publish, or a UsageReportError listing every problem. */
export const validateActivity = (botId: string, report: ActivityReport): ActivityEvent =>
  validate(ActivityEventSchema, activityEventTimeProblems, botId, report);
