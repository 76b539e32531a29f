import { z } from 'zod';
import { ConfigError, commonEnvShape, natsServers, parseEnv, port, serviceDatabaseUrl, serviceSchema } from './env';

const schema = z.object({ ...commonEnvShape, SOME_HTTP_PORT: port(8089), SECRET_KEY: z.string().min(10).optional() });

describe(parseEnv.name, () => {
  it('applies the documented defaults', () => {
    const config = parseEnv(schema, {});
    expect(config).toMatchObject({
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/parley',
      NATS_URL: 'nats://127.0.0.1:4222',
      NATS_SUBJECT_PREFIX: '',
      REDIS_URL: 'redis://127.0.0.1:6379',
      SOME_HTTP_PORT: 8089,
      MIGRATE_ON_START: true,
      JETSTREAM_REPLICAS: 1,
    });
  });

  it('takes a NATS cluster as a comma-separated NATS_URL and JETSTREAM_REPLICAS from 1 to 5', () => {
    const config = parseEnv(schema, {
      NATS_URL: 'nats://n1:4222, nats://n2:4222,tls://n3:4222,127.0.0.1:4223',
      JETSTREAM_REPLICAS: '3',
    });
    expect(natsServers(config.NATS_URL)).toEqual([
      'nats://n1:4222',
      'nats://n2:4222',
      'tls://n3:4222',
      '127.0.0.1:4223',
    ]);
    expect(config.JETSTREAM_REPLICAS).toBe(3);
    expect(parseEnv(schema, { JETSTREAM_REPLICAS: '5' }).JETSTREAM_REPLICAS).toBe(5);

    for (const [name, value] of [
      ['JETSTREAM_REPLICAS', '0'],
      ['JETSTREAM_REPLICAS', '6'],
      ['JETSTREAM_REPLICAS', '2.5'],
      ['JETSTREAM_REPLICAS', 'three'],
      ['NATS_URL', 'nats://n1:4222,,http://n2'],
      ['NATS_URL', 'nats://n1:4222 nats://n2:4222'],
      ['NATS_URL', ','],
    ]) {
      let caught: unknown;
      try {
        parseEnv(schema, { [name]: value });
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect((caught as ConfigError).problems).toEqual([
        expect.stringMatching(new RegExp(`^${name}=${JSON.stringify(value).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `)),
      ]);
    }
  });

  it('reads an empty variable as unset, so its default applies', () => {
    const config = parseEnv(schema, { SOME_HTTP_PORT: '', SECRET_KEY: '', NATS_URL: '' });
    expect(config.SOME_HTTP_PORT).toBe(8089);
    expect(config.SECRET_KEY).toBeUndefined();
    expect(config.NATS_URL).toBe('nats://127.0.0.1:4222');
  });

  it('lists every bad variable by name, hiding secrets', () => {
    let caught: unknown;
    try {
      parseEnv(schema, {
        SOME_HTTP_PORT: 'eighty',
        DATABASE_URL: 'mysql://x',
        NATS_SUBJECT_PREFIX: 'a.b',
        SECRET_KEY: 'short',
      });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const problems = (caught as ConfigError).problems.join('\n');
    expect(problems).toMatch(/^SOME_HTTP_PORT="eighty": /m);
    expect(problems).toMatch(/^DATABASE_URL="mysql:\/\/x": must start with postgres/m);
    expect(problems).toMatch(/^NATS_SUBJECT_PREFIX="a.b": /m);
    expect(problems).toMatch(/^SECRET_KEY=\(hidden\): /m);
    expect(problems).not.toContain('short');
  });

  it('lets a service override the database and prefixes its schema', () => {
    const config = parseEnv(schema, { DB_SCHEMA_PREFIX: 't1_' });
    expect(serviceDatabaseUrl('session', config, { SESSION_DATABASE_URL: 'postgres://other/db' })).toBe(
      'postgres://other/db',
    );
    expect(serviceDatabaseUrl('session', config, {})).toBe(config.DATABASE_URL);
    expect(serviceSchema('session', config)).toBe('t1_session');
  });
});
