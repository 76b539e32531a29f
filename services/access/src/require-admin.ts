import { ParleyError, type Principal } from '@parley/contracts';

export function requireAdmin(actor: Principal): asserts actor is Extract<Principal, { type: 'user' }> {
  if (actor.type !== 'user' || !actor.is_admin) throw new ParleyError('FORBIDDEN', 'this needs an administrator');
}
