import { z } from 'zod';

const uuid = z.uuid({ error: 'must be a UUID' });
export const GroupMemberParamsSchema = z.object({ id: uuid, user_id: uuid });
export const UserRoleParamsSchema = z.object({ id: uuid, role_id: uuid });
export const BotKeyParamsSchema = z.object({ id: uuid, key_id: uuid });
