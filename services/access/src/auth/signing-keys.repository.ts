import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { SigningKeyEntity, type SigningKey } from './auth.entities';

/** The signing keys' SQL. */
@Injectable()
export class SigningKeysRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  async newest(): Promise<SigningKey | undefined> {
    return (await this.orm.em.fork().find(SigningKeyEntity, {}, { orderBy: { createdAt: 'desc' }, limit: 1 })).at(0);
  }

  /** Stores the key unless one exists: instances starting together may both make one, the first insert wins. */
  async insertFirst(kid: string, privateJwk: string, publicJwk: string): Promise<void> {
    await this.orm.em.fork().execute(
      `insert into signing_keys (kid, private_jwk, public_jwk, created_at) select ?, ?, ?, now()
         where not exists (select 1 from signing_keys)`,
      [kid, privateJwk, publicJwk],
    );
  }
}
