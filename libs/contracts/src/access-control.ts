import { z } from 'zod';
import { rpc } from './rpc';
import { PrincipalSchema } from './principal';
import { TimestampSchema } from './common';
import { pageSchema, PageRequestSchema } from './pagination';
import { PasswordSchema } from './access';
import { MAX_ID_LIST, dateTime, list, text } from './input';

export const PERMISSIONS = ['read', 'write', 'manage'] as const;
export type Permission = (typeof PERMISSIONS)[number];
export const RESOURCE_TYPES = ['bot', 'session'] as const;
export type ResourceType = (typeof RESOURCE_TYPES)[number];

/** `write` implies `read`; `manage` implies both. */
export const PERMISSION_RANK: Record<Permission, number> = { read: 1, write: 2, manage: 3 };

const name = text({ trim: true, min: 1, max: 100, noControl: true });
const remark = text({ max: 500 });
const description = text({ max: 2000 });
const ids = list(z.uuid(), { max: MAX_ID_LIST });

export const GroupSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  remark: z.string().nullable(),
  is_default: z.boolean(),
  created_at: TimestampSchema,
});
export const CreateGroupBodySchema = z.object({ name, remark: remark.optional() }).strict();
export const UpdateGroupBodySchema = z
  .object({ name: name.optional(), remark: remark.nullable().optional() })
  .strict()
  .refine((b) => Object.keys(b).length > 0, { message: 'nothing to update' });

export const MembershipSchema = z.object({ user_id: z.uuid(), username: z.string(), is_group_admin: z.boolean() });
export const PutMemberBodySchema = z.object({ is_group_admin: z.boolean().default(false) }).strict();

export const RoleSchema = z.object({ id: z.uuid(), name: z.string() });
export const CreateRoleBodySchema = z.object({ name }).strict();

export const GrantSchema = z.object({
  resource_type: z.enum(RESOURCE_TYPES),
  resource_id: z.union([z.uuid(), z.literal('*')], { error: 'a UUID or "*"' }),
  permission: z.enum(PERMISSIONS),
});
export type Grant = z.infer<typeof GrantSchema>;
export const MAX_GRANTS = 1000;
export const PutGrantsBodySchema = z.object({ grants: list(GrantSchema, { max: MAX_GRANTS }) }).strict();
export const GrantsSchema = z.object({ role_id: z.uuid(), grants: z.array(GrantSchema) });

export const BotSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  enabled: z.boolean(),
  owner_id: z.uuid(),
  created_at: TimestampSchema,
});
export type Bot = z.infer<typeof BotSchema>;
export const CreateBotBodySchema = z.object({ name, description: description.optional() }).strict();
export const BotCreatedSchema = BotSchema.extend({ api_key: z.string(), api_key_id: z.uuid() });
export const UpdateBotBodySchema = z
  .object({
    name: name.optional(),
    description: description.nullable().optional(),
    enabled: z.boolean().optional(),
  })
  .strict()
  .refine((b) => Object.keys(b).length > 0, { message: 'nothing to update' });

export const ApiKeySchema = z.object({
  id: z.uuid(),
  prefix: z.string(),
  created_at: TimestampSchema,
  last_used_at: TimestampSchema.nullable(),
  expires_at: TimestampSchema.nullable(),
  revoked: z.boolean(),
});
export const CreateKeyBodySchema = z
  .object({ expires_at: dateTime().optional() })
  .strict()
  .refine((b) => !b.expires_at || Date.parse(b.expires_at) > Date.now(), {
    message: 'must be in the future',
    path: ['expires_at'],
  });
export const KeyCreatedSchema = z.object({
  id: z.uuid(),
  prefix: z.string(),
  api_key: z.string(),
  expires_at: TimestampSchema.nullable(),
});

/** Bot NATS credentials: one hour by default, a day at most. */
export const DEFAULT_NATS_CREDENTIALS_TTL = 3600;
export const MIN_NATS_CREDENTIALS_TTL = 1;
export const MAX_NATS_CREDENTIALS_TTL = 86_400;
export const NatsCredentialsBodySchema = z
  .object({
    ttl_seconds: z
      .number()
      .int()
      .min(MIN_NATS_CREDENTIALS_TTL)
      .max(MAX_NATS_CREDENTIALS_TTL)
      .default(DEFAULT_NATS_CREDENTIALS_TTL),
  })
  .strict();
export const NatsCredentialsSchema = z.object({
  /** A NATS user credentials file: the user JWT and its nkey seed. Shown once. */
  creds: z.string(),
  /** The user's public nkey (U…). */
  public_key: z.string(),
  expires_at: z.string(),
  publish: z.array(z.string()),
  subscribe: z.array(z.string()),
  inbox_prefix: z.string(),
});
export type NatsCredentials = z.infer<typeof NatsCredentialsSchema>;

export const ChangePasswordBodySchema = z
  .object({ current_password: text({ min: 1, max: 256 }), new_password: PasswordSchema })
  .strict();

/** What a permission check is about. A session names its owner, bot and groups, as the session service holds them. */
export const ResourceSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('session'),
    id: z.uuid(),
    user_id: z.uuid(),
    bot_id: z.uuid().nullable(),
    group_ids: ids,
  }),
  z.object({ type: z.literal('bot'), id: z.uuid() }),
]);
export type Resource = z.infer<typeof ResourceSchema>;

export const CheckSchema = z.object({
  subject: PrincipalSchema,
  action: z.enum(PERMISSIONS),
  resource: ResourceSchema,
});
export type Check = z.infer<typeof CheckSchema>;
export const DecisionSchema = z.object({ allowed: z.boolean(), reason: z.string() });
export type Decision = z.infer<typeof DecisionSchema>;

/** How far a principal may list others' sessions. */
export const ListScopeSchema = z.object({
  /** Every session of the named user or bot. */
  all: z.boolean(),
  /** Otherwise those in any of these groups (group admin). */
  group_ids: z.array(z.uuid()),
});

export const BotPrincipalInfoSchema = z.object({
  bot_id: z.uuid(),
  name: z.string(),
  key_id: z.uuid(),
  expires_at: TimestampSchema.nullable(),
});

const actor = { actor: PrincipalSchema };
const page = { page: PageRequestSchema };
const ok = z.object({ ok: z.literal(true) });
const idReq = z.object({ ...actor, id: z.uuid() });

export const AccessControlRpc = {
  check: rpc('access.permissions.check', CheckSchema, DecisionSchema),
  checkBatch: rpc(
    'access.permissions.check_batch',
    z.object({ checks: list(CheckSchema, { min: 1, max: 500 }) }),
    z.object({ results: z.array(DecisionSchema) }),
  ),
  /** The bots the subject may read: all of them (admin, or a grant on every bot) or these. */
  botScope: rpc(
    'access.permissions.bot_scope',
    z.object({ subject: PrincipalSchema }),
    z.object({ all: z.boolean(), bot_ids: z.array(z.uuid()) }),
  ),
  listScope: rpc(
    'access.permissions.list_scope',
    z.object({ subject: PrincipalSchema, user_id: z.uuid().optional(), bot_id: z.uuid().optional() }),
    ListScopeSchema,
  ),
  userGroups: rpc('access.users.groups', z.object({ user_id: z.uuid() }), z.object({ group_ids: z.array(z.uuid()) })),
  /** Whether bots exist and are enabled; unknown ids are absent from the answer. */
  botStatus: rpc(
    'access.bots.status',
    z.object({ ids: list(z.uuid(), { min: 1, max: 500 }) }),
    z.object({ bots: z.array(z.object({ id: z.uuid(), enabled: z.boolean() })) }),
  ),
  verifyKey: rpc('access.keys.verify', z.object({ api_key: text({ min: 1, max: 200 }) }), BotPrincipalInfoSchema),
  changePassword: rpc('access.me.password', ChangePasswordBodySchema.extend(actor), ok),
  deleteUser: rpc('access.users.delete', idReq, ok),

  createGroup: rpc('access.groups.create', CreateGroupBodySchema.extend(actor), GroupSchema),
  listGroups: rpc('access.groups.list', z.object({ ...actor, ...page }), pageSchema(GroupSchema)),
  updateGroup: rpc(
    'access.groups.update',
    z.object({ ...actor, id: z.uuid(), patch: UpdateGroupBodySchema }),
    GroupSchema,
  ),
  deleteGroup: rpc('access.groups.delete', idReq, ok),
  listMembers: rpc(
    'access.groups.members.list',
    z.object({ ...actor, id: z.uuid(), ...page }),
    pageSchema(MembershipSchema),
  ),
  putMember: rpc(
    'access.groups.members.put',
    z.object({ ...actor, id: z.uuid(), user_id: z.uuid(), is_group_admin: z.boolean() }),
    MembershipSchema,
  ),
  deleteMember: rpc('access.groups.members.delete', z.object({ ...actor, id: z.uuid(), user_id: z.uuid() }), ok),

  createRole: rpc('access.roles.create', CreateRoleBodySchema.extend(actor), RoleSchema),
  listRoles: rpc('access.roles.list', z.object({ ...actor, ...page }), pageSchema(RoleSchema)),
  getGrants: rpc('access.roles.grants.get', idReq, GrantsSchema),
  putGrants: rpc(
    'access.roles.grants.put',
    z.object({ ...actor, id: z.uuid(), grants: list(GrantSchema, { max: MAX_GRANTS }) }),
    GrantsSchema,
  ),
  putUserRole: rpc(
    'access.users.roles.put',
    z.object({ ...actor, user_id: z.uuid(), role_id: z.uuid() }),
    z.object({ user_id: z.uuid(), role_id: z.uuid() }),
  ),
  deleteUserRole: rpc('access.users.roles.delete', z.object({ ...actor, user_id: z.uuid(), role_id: z.uuid() }), ok),

  createBot: rpc('access.bots.create', CreateBotBodySchema.extend(actor), BotCreatedSchema),
  listBots: rpc('access.bots.list', z.object({ ...actor, ...page }), pageSchema(BotSchema)),
  getBot: rpc('access.bots.get', idReq, BotSchema),
  updateBot: rpc('access.bots.update', z.object({ ...actor, id: z.uuid(), patch: UpdateBotBodySchema }), BotSchema),
  deleteBot: rpc('access.bots.delete', idReq, ok),
  createKey: rpc(
    'access.bots.keys.create',
    z.object({ ...actor, id: z.uuid(), expires_at: dateTime().optional() }),
    KeyCreatedSchema,
  ),
  listKeys: rpc('access.bots.keys.list', z.object({ ...actor, id: z.uuid(), ...page }), pageSchema(ApiKeySchema)),
  deleteKey: rpc('access.bots.keys.delete', z.object({ ...actor, id: z.uuid(), key_id: z.uuid() }), ok),
  /** Mints short-lived NATS credentials scoped to the bot (manage, or the bot's own key). */
  natsCredentials: rpc(
    'access.bots.nats_credentials',
    z.object({
      ...actor,
      id: z.uuid(),
      ttl_seconds: z.number().int().min(MIN_NATS_CREDENTIALS_TTL).max(MAX_NATS_CREDENTIALS_TTL),
    }),
    NatsCredentialsSchema,
  ),
} as const;
