import { z } from 'zod';

export const UserPrincipalSchema = z.object({
  type: z.literal('user'),
  id: z.uuid(),
  is_admin: z.boolean(),
});
export const BotPrincipalSchema = z.object({
  type: z.literal('bot'),
  id: z.uuid(),
});
/** Who is asking: passed by the gateway on every request to a service. */
export const PrincipalSchema = z.discriminatedUnion('type', [UserPrincipalSchema, BotPrincipalSchema]);
export type Principal = z.infer<typeof PrincipalSchema>;
export type UserPrincipal = z.infer<typeof UserPrincipalSchema>;
