import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';

/** The key pair that signs access tokens; generated at first start unless JWT_PRIVATE_KEY is given. */
export const SigningKeyEntity = defineEntity({
  name: 'SigningKey',
  tableName: 'signing_keys',
  properties: {
    kid: p.string().length(64).primary(),
    privateJwk: p.json<Record<string, unknown>>(),
    publicJwk: p.json<Record<string, unknown>>(),
    createdAt: p.datetime(),
  },
});
export type SigningKey = InferEntity<typeof SigningKeyEntity>;

/** A refresh token, kept only as its SHA-256; rotated on every use. */
export const RefreshTokenEntity = defineEntity({
  name: 'RefreshToken',
  tableName: 'refresh_tokens',
  properties: {
    id: p.uuid().primary(),
    userId: p.uuid().index('refresh_tokens_user_idx'),
    tokenHash: p.string().length(64).unique('refresh_tokens_hash_key'),
    expiresAt: p.datetime(),
    revokedAt: p.datetime().nullable(),
    createdAt: p.datetime(),
  },
});
export type RefreshToken = InferEntity<typeof RefreshTokenEntity>;

/**
 * An address (`addressKey`: IPv4, or an IPv6 /64) a user signed in from: past the login
 * ceilings, such an address may still try that user's password.
 */
export const LoginAddressEntity = defineEntity({
  name: 'LoginAddress',
  tableName: 'login_addresses',
  properties: {
    userId: p.uuid().primary(),
    address: p.string().length(64).primary(),
    lastSuccessAt: p.datetime(),
  },
});
export type LoginAddress = InferEntity<typeof LoginAddressEntity>;
