import { Inject, Injectable } from '@nestjs/common';
import { AccessControlRpc, ParleyError, SessionAccessRpc, type Principal } from '@parley/contracts';
import { RpcClient } from '@parley/kit';

/** The bots whose rows a query may see: every bot, or these. */
export type BotRestriction = 'all' | string[];

/**
 * Who may read and set what, as API.md says: a bot's usage, quota and activity need `read` on
 * the bot (its owner, a grant, an admin, or the bot's own key); its budget needs `manage`;
 * one's own usage as an end user (`user_id` = oneself) and a readable session's usage are
 * readable too. A bot asked for by id that the caller may not read is 404; a filter naming
 * what the caller may not read is 403.
 */
@Injectable()
export class UsageAccess {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  private async allowed(actor: Principal, botId: string, action: 'read' | 'manage'): Promise<boolean> {
    const decision = await this.rpc.call(AccessControlRpc.check, {
      subject: actor,
      action,
      resource: { type: 'bot', id: botId },
    });
    return decision.allowed;
  }

  /** A bot addressed by id: unreadable is 404; readable but not enough for `action` is 403. */
  async requireBot(actor: Principal, botId: string, action: 'read' | 'manage'): Promise<void> {
    if (!(await this.allowed(actor, botId, 'read'))) throw new ParleyError('NOT_FOUND', `bot ${botId} not found`);
    if (action === 'manage' && !(await this.allowed(actor, botId, 'manage'))) {
      throw new ParleyError('FORBIDDEN', `managing bot ${botId} needs the manage right`);
    }
  }

  /** The bots a usage query may range over, after checking every filter it names. */
  async restriction(
    actor: Principal,
    filters: { bot_id?: string; user_id?: string; session_id?: string },
  ): Promise<BotRestriction> {
    if (actor.type === 'user' && actor.is_admin) return 'all';
    if (filters.bot_id && !(await this.allowed(actor, filters.bot_id, 'read'))) {
      throw new ParleyError('FORBIDDEN', `the usage of bot ${filters.bot_id} is not yours to read`);
    }
    if (filters.session_id) {
      await this.rpc.call(SessionAccessRpc, { actor, id: filters.session_id, action: 'read' });
    }
    if (actor.type === 'bot') return [actor.id];
    if (filters.bot_id || filters.session_id) return 'all';
    if (filters.user_id) {
      if (filters.user_id !== actor.id) {
        throw new ParleyError('FORBIDDEN', `the usage of user ${filters.user_id} is not yours to read`);
      }
      return 'all';
    }
    const scope = await this.rpc.call(AccessControlRpc.botScope, { subject: actor });
    return scope.all ? 'all' : scope.bot_ids;
  }
}
