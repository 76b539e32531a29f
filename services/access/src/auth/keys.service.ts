import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { SignJWT, exportJWK, generateKeyPair, importJWK, importPKCS8, type CryptoKey, type JWK } from 'jose';
import { createHash, createPublicKey } from 'node:crypto';
import { ACCESS_CONFIG, type AccessConfig } from '../config';
import { SigningKeysRepository } from './signing-keys.repository';

export const JWT_ALG = 'EdDSA';
export const JWT_ISSUER = 'parley-access';
export const JWT_AUDIENCE = 'parley';

interface ActiveKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/**
 * The Ed25519 key that signs access tokens. From JWT_PRIVATE_KEY when given; otherwise
 * generated once and kept in the access schema, so every instance signs with the same key.
 */
@Injectable()
export class KeysService implements OnApplicationBootstrap {
  private active: Promise<ActiveKey> | undefined;

  constructor(
    @Inject(SigningKeysRepository) private readonly signingKeys: SigningKeysRepository,
    @Inject(ACCESS_CONFIG) private readonly config: AccessConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.key();
  }

  key(): Promise<ActiveKey> {
    this.active ??= this.load().catch((error: unknown) => {
      this.active = undefined;
      throw error;
    });
    return this.active;
  }

  private async load(): Promise<ActiveKey> {
    if (this.config.JWT_PRIVATE_KEY) {
      const pem = this.config.JWT_PRIVATE_KEY.replace(/\\n/g, '\n');
      const privateKey = await importPKCS8(pem, JWT_ALG, { extractable: true });
      const publicJwk = (await exportJWK(createPublicKey(pem))) as JWK;
      const kid = createHash('sha256').update(JSON.stringify(publicJwk)).digest('base64url').slice(0, 16);
      return { kid, privateKey, publicJwk: { ...publicJwk, kid, alg: JWT_ALG, use: 'sig' } };
    }
    let stored = await this.signingKeys.newest();
    if (!stored) {
      const pair = await generateKeyPair(JWT_ALG, { crv: 'Ed25519', extractable: true });
      const publicJwk = await exportJWK(pair.publicKey);
      const kid = createHash('sha256').update(JSON.stringify(publicJwk)).digest('base64url').slice(0, 16);
      // Instances starting together may both generate one: the first insert wins and everyone reads it back.
      await this.signingKeys.insertFirst(
        kid,
        JSON.stringify(await exportJWK(pair.privateKey)),
        JSON.stringify(publicJwk),
      );
      stored = await this.signingKeys.newest();
      if (!stored) throw new Error('signing key was not stored');
    }
    const privateKey = (await importJWK(stored.privateJwk as JWK, JWT_ALG)) as CryptoKey;
    return {
      kid: stored.kid,
      privateKey,
      publicJwk: { ...(stored.publicJwk as JWK), kid: stored.kid, alg: JWT_ALG, use: 'sig' },
    };
  }

  async jwks(): Promise<{ keys: JWK[] }> {
    return { keys: [(await this.key()).publicJwk] };
  }

  async sign(claims: { sub: string; adm: boolean }, ttlSeconds: number): Promise<string> {
    const { kid, privateKey } = await this.key();
    return new SignJWT({ adm: claims.adm })
      .setProtectedHeader({ alg: JWT_ALG, kid, typ: 'JWT' })
      .setSubject(claims.sub)
      .setIssuer(JWT_ISSUER)
      .setAudience(JWT_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(`${ttlSeconds}s`)
      .sign(privateKey);
  }
}
