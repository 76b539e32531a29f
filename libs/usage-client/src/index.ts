export {
  UsageClient,
  PARLEY_ERROR_HEADER,
  type Receipt,
  type UsageClientConnectOptions,
  type CredentialsInfo,
} from './client';
export { CredentialsError, DEFAULT_RENEW_AFTER, type CredentialsOptions } from './credentials';
export { UsageReportError, ParleyRequestError, UsageClientClosedError } from './errors';
export { DEFAULT_MAX_PENDING, DEFAULT_RETRY_HORIZON_MS, type UsageClientOptions } from './options';
export type { UsageReport, ActivityReport } from './reports';
export type { Quota, FieldError, UsageStatus } from '@parley/contracts';
