import { Controller, Inject } from '@nestjs/common';
import type { z } from 'zod';
import { AccessRpc, ParleyError } from '@parley/contracts';
import { BotsService } from '../bots/bots.service';
import { GroupsService } from '../groups/groups.service';
import { RolesService } from '../roles/roles.service';
import { RpcHandler } from '@parley/kit';
import { UsersService } from '../users/users.service';
import { AuthService } from './auth.service';
import { KeysService } from './keys.service';

type Req<K extends keyof typeof AccessRpc> = z.output<(typeof AccessRpc)[K]['request']>;

@Controller()
export class AuthHandler {
  constructor(
    @Inject(AuthService) private readonly auth: AuthService,
    @Inject(KeysService) private readonly keys: KeysService,
    @Inject(UsersService) private readonly users: UsersService,
    @Inject(GroupsService) private readonly groups: GroupsService,
    @Inject(RolesService) private readonly roles: RolesService,
    @Inject(BotsService) private readonly bots: BotsService,
  ) {}

  @RpcHandler(AccessRpc.login)
  login(req: Req<'login'>) {
    return this.auth.login(req.username, req.password, req.client_address);
  }

  @RpcHandler(AccessRpc.refresh)
  refresh(req: Req<'refresh'>) {
    return this.auth.refresh(req.refresh_token);
  }

  @RpcHandler(AccessRpc.logout)
  async logout(req: Req<'logout'>) {
    await this.auth.logout(req.refresh_token);
    return { ok: true as const };
  }

  @RpcHandler(AccessRpc.jwks)
  jwks() {
    return this.keys.jwks();
  }

  @RpcHandler(AccessRpc.principalState)
  async principalState(req: Req<'principalState'>) {
    const user = await this.users.findById(req.user_id);
    return user ? { id: user.id, enabled: user.enabled, is_admin: user.isAdmin } : null;
  }

  @RpcHandler(AccessRpc.me)
  async me(req: Req<'me'>) {
    if (req.actor.type === 'bot') {
      const name = await this.bots.botName(req.actor.id);
      if (!name) throw new ParleyError('UNAUTHENTICATED', 'the bot no longer exists');
      return { type: 'bot' as const, id: req.actor.id, name };
    }
    const user = await this.users.findById(req.actor.id);
    if (!user) throw new ParleyError('UNAUTHENTICATED', 'the user no longer exists');
    const [roles, groups] = await Promise.all([this.roles.roleNamesOf(user.id), this.groups.groupsOf(user.id)]);
    return {
      type: 'user' as const,
      id: user.id,
      username: user.username,
      email: user.email ?? null,
      is_admin: user.isAdmin,
      roles,
      groups,
    };
  }
}
