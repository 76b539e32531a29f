import { ParleyError } from '@parley/contracts';
import { toParleyError } from '@parley/kit';
import { fromFrameworkError, toProblem } from './problem';

describe('a service error reply, as the client sees it', () => {
  it('renders a database outage in a service as 503 UPSTREAM_UNAVAILABLE, retryable, not 500', () => {
    // What the service's transport sends (the reply body), and what the gateway's RpcClient rebuilds.
    // (MikroORM's DriverException, shaped here: the gateway does not load MikroORM.)
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), {
      name: 'DriverException',
      code: 'ECONNREFUSED',
    });
    const reply = toParleyError(refused).toPayload();
    const problem = fromFrameworkError(ParleyError.fromPayload(reply));
    expect(problem).toBeDefined();
    expect(toProblem(problem as ParleyError, '/api/v1/sessions/x/messages')).toEqual({
      type: 'urn:parley:problem:upstream-unavailable',
      title: 'Service unavailable',
      status: 503,
      detail: 'the database is out of reach; try again',
      code: 'UPSTREAM_UNAVAILABLE',
      retryable: true,
      instance: '/api/v1/sessions/x/messages',
    });
  });

  it('renders a call refused while NATS is away the same way', () => {
    const problem = fromFrameworkError(
      new ParleyError('UPSTREAM_UNAVAILABLE', 'the connection to NATS is down (reconnecting); try again'),
    );
    expect(toProblem(problem as ParleyError)).toMatchObject({
      status: 503,
      code: 'UPSTREAM_UNAVAILABLE',
      retryable: true,
    });
  });
});
