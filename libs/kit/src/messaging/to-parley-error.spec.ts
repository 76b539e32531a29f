import { ConnectionException, DriverException } from '@mikro-orm/core';
import { ParleyError } from '@parley/contracts';
import { toParleyError } from './transport';

const pgError = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});

describe('toParleyError: what a handler failure travels as', () => {
  it('answers 503 UPSTREAM_UNAVAILABLE, retryable, when PostgreSQL is out of reach', () => {
    const cases = [
      new DriverException(pgError('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED')),
      new ConnectionException(pgError('the database system is starting up', '57P03')),
      new DriverException(pgError('the database system is not yet accepting connections', '57P03')),
      new DriverException(pgError('terminating connection due to administrator command', '57P01')),
      new DriverException(pgError('Connection terminated unexpectedly')),
      new DriverException(pgError('connection failure', '08006')),
    ];
    for (const error of cases) {
      const problem = toParleyError(error);
      expect({ message: error.message, code: problem.code, status: problem.status }).toEqual({
        message: error.message,
        code: 'UPSTREAM_UNAVAILABLE',
        status: 503,
      });
      expect(problem.retryable).toBe(true);
      expect(problem.detail).toBe('the database is out of reach; try again');
      // The driver's text stays in the logs (the cause), never in the answer.
      expect(problem.toPayload().detail).not.toContain('127.0.0.1');
      expect(problem.cause).toBe(error);
    }
  });

  it('names "a dependency" for a network failure that did not come from the database', () => {
    const problem = toParleyError(pgError('read ECONNRESET', 'ECONNRESET'));
    expect(problem).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', retryable: true });
    expect(problem.detail).toBe('a dependency is out of reach; try again');
  });

  it('keeps a statement timeout apart (QUERY_TIMEOUT), and anything else INTERNAL with its text hidden', () => {
    expect(toParleyError(new DriverException(pgError('canceling statement', '57014')))).toMatchObject({
      code: 'QUERY_TIMEOUT',
      status: 503,
      retryable: true,
    });
    const bug = toParleyError(new TypeError("cannot read properties of undefined (reading 'id')"));
    expect(bug).toMatchObject({ code: 'INTERNAL', status: 500, detail: 'internal error' });
    expect(toParleyError(new DriverException(pgError('duplicate key value', '23505')))).toMatchObject({
      code: 'INTERNAL',
    });
  });

  it('passes a ParleyError through as it is (an upstream service answered it)', () => {
    const upstream = new ParleyError('UPSTREAM_UNAVAILABLE', 'no service answers session.sessions.get');
    expect(toParleyError(upstream)).toBe(upstream);
    const notFound = new ParleyError('NOT_FOUND', 'no such session');
    expect(toParleyError(notFound)).toBe(notFound);
  });
});
