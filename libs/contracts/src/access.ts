import { z } from 'zod';
import { rpc } from './rpc';
import { PrincipalSchema } from './principal';
import { TimestampSchema } from './common';
import { pageSchema, PageRequestSchema } from './pagination';
import { text } from './input';

export const UsernameSchema = text({
  min: 3,
  max: 64,
  pattern: /^[A-Za-z0-9_.@-]+$/,
  patternMessage: 'letters, digits and _ . @ - only',
});
export const PasswordSchema = text({ min: 8, max: 256 });
/** An email address as users may give it. */
export const EmailSchema = z.email().max(320);

export const UserSchema = z.object({
  id: z.uuid(),
  username: z.string(),
  email: z.string().nullable(),
  enabled: z.boolean(),
  is_admin: z.boolean(),
  created_at: TimestampSchema,
});
export type User = z.infer<typeof UserSchema>;

export const CreateUserBodySchema = z
  .object({
    username: UsernameSchema,
    password: PasswordSchema,
    email: EmailSchema.optional(),
  })
  .strict();
export const UpdateUserBodySchema = z
  .object({
    email: EmailSchema.nullable().optional(),
    password: PasswordSchema.optional(),
    enabled: z.boolean().optional(),
    is_admin: z.boolean().optional(),
  })
  .strict();
export const ListUsersQuerySchema = z.object({ q: text({ max: 100 }).optional() });

export const LoginBodySchema = z
  .object({ username: text({ min: 1, max: 64 }), password: text({ min: 1, max: 256 }) })
  .strict();
export const RefreshBodySchema = z.object({ refresh_token: text({ min: 1, max: 200 }) }).strict();
export const TokenResponseSchema = z.object({
  access_token: z.string(),
  token_type: z.literal('Bearer'),
  expires_in: z.number().int(),
  refresh_token: z.string(),
});
export type TokenResponse = z.infer<typeof TokenResponseSchema>;

export const MeGroupSchema = z.object({ id: z.uuid(), name: z.string(), is_group_admin: z.boolean() });
export const MeSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('user'),
    id: z.uuid(),
    username: z.string(),
    email: z.string().nullable(),
    is_admin: z.boolean(),
    roles: z.array(z.string()),
    groups: z.array(MeGroupSchema),
  }),
  z.object({ type: z.literal('bot'), id: z.uuid(), name: z.string() }),
]);

/** The state of a user the gateway needs after verifying a token's signature. */
export const PrincipalStateSchema = z.object({ id: z.uuid(), enabled: z.boolean(), is_admin: z.boolean() });

export const JwksSchema = z.object({ keys: z.array(z.record(z.string(), z.unknown())) });

const actor = { actor: PrincipalSchema };

export const AccessRpc = {
  login: rpc(
    'access.auth.login',
    LoginBodySchema.extend({ client_address: text({ max: 100 }).optional() }),
    TokenResponseSchema,
  ),
  refresh: rpc('access.auth.refresh', RefreshBodySchema, TokenResponseSchema),
  logout: rpc('access.auth.logout', RefreshBodySchema, z.object({ ok: z.literal(true) })),
  jwks: rpc('access.keys.jwks', z.object({}), JwksSchema),
  principalState: rpc('access.principals.state', z.object({ user_id: z.uuid() }), PrincipalStateSchema.nullable()),
  me: rpc('access.me.get', z.object(actor), MeSchema),
  createUser: rpc('access.users.create', CreateUserBodySchema.extend(actor), UserSchema),
  listUsers: rpc(
    'access.users.list',
    ListUsersQuerySchema.extend({ ...actor, page: PageRequestSchema }),
    pageSchema(UserSchema),
  ),
  updateUser: rpc('access.users.update', z.object({ ...actor, id: z.uuid(), patch: UpdateUserBodySchema }), UserSchema),
} as const;
