import { ParleyError } from '@parley/contracts';
import { isConflictError, isInfrastructureError, isInputError } from './failures';

const failure = (message: string, code?: string, cause?: unknown) =>
  Object.assign(new Error(message, { cause }), code ? { code } : {});

describe('failure classes', () => {
  it('takes an absent dependency for one (wait and retry), not for bad input', () => {
    expect(isInfrastructureError(failure('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'))).toBe(true);
    expect(isInfrastructureError(failure('terminating connection due to administrator command', '57P01'))).toBe(true);
    expect(isInfrastructureError(failure('Connection terminated unexpectedly'))).toBe(true);
    expect(isInfrastructureError(failure('wrapped', undefined, failure('no connection', '08006')))).toBe(true);
    expect(isInfrastructureError(new ParleyError('UPSTREAM_TIMEOUT', 'no answer'))).toBe(true);
    expect(isInfrastructureError(new ParleyError('NOT_FOUND', 'no bot'))).toBe(false);
    expect(isInfrastructureError(failure('invalid input syntax for type uuid', '22P02'))).toBe(false);
  });

  it('tells lost races from refused input', () => {
    expect(isConflictError(failure('deadlock detected', '40P01'))).toBe(true);
    expect(isConflictError(failure('could not serialize access', '40001'))).toBe(true);
    expect(isInputError(failure('invalid byte sequence for encoding "UTF8": 0x00', '22021'))).toBe(true);
    expect(isInputError(failure('duplicate key value', '23505'))).toBe(true);
    expect(isInputError(new ParleyError('VALIDATION_FAILED', 'bad'))).toBe(true);
    expect(isInputError(new ParleyError('UPSTREAM_UNAVAILABLE', 'away'))).toBe(false);
    expect(isInputError(new Error('a bug'))).toBe(false);
  });
});
