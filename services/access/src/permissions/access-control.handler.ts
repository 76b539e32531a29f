import { Controller, Inject } from '@nestjs/common';
import type { z } from 'zod';
import { AccessControlRpc, ParleyError, ReadScopeRpc } from '@parley/contracts';
import { RpcHandler } from '@parley/kit';
import { BotsService } from '../bots/bots.service';
import { NatsCredentialsService } from '../bots/nats-credentials.service';
import { GroupsService } from '../groups/groups.service';
import { RolesService } from '../roles/roles.service';
import { UsersService } from '../users/users.service';
import { PermissionsService } from './permissions.service';

type Req<K extends keyof typeof AccessControlRpc> = z.output<(typeof AccessControlRpc)[K]['request']>;
const ok = { ok: true as const };

/** The NATS edge of groups, roles, bots, keys and permission checks. */
@Controller()
export class AccessControlHandler {
  constructor(
    @Inject(PermissionsService) private readonly permissions: PermissionsService,
    @Inject(GroupsService) private readonly groups: GroupsService,
    @Inject(RolesService) private readonly roles: RolesService,
    @Inject(BotsService) private readonly bots: BotsService,
    @Inject(NatsCredentialsService) private readonly credentials: NatsCredentialsService,
    @Inject(UsersService) private readonly users: UsersService,
  ) {}

  @RpcHandler(AccessControlRpc.check)
  check(req: Req<'check'>) {
    return this.permissions.check(req);
  }

  @RpcHandler(AccessControlRpc.checkBatch)
  async checkBatch(req: Req<'checkBatch'>) {
    return { results: await this.permissions.checkBatch(req.checks) };
  }

  @RpcHandler(AccessControlRpc.listScope)
  listScope(req: Req<'listScope'>) {
    return this.permissions.listScope(req.subject, req.user_id, req.bot_id);
  }

  @RpcHandler(AccessControlRpc.botScope)
  botScope(req: Req<'botScope'>) {
    return this.permissions.botScope(req.subject);
  }

  @RpcHandler(AccessControlRpc.botStatus)
  async botStatus(req: Req<'botStatus'>) {
    return { bots: await this.bots.statuses(req.ids) };
  }

  @RpcHandler(ReadScopeRpc)
  readScope(req: z.output<typeof ReadScopeRpc.request>) {
    return this.permissions.readScope(req.subject);
  }

  @RpcHandler(AccessControlRpc.userGroups)
  async userGroups(req: Req<'userGroups'>) {
    if (!(await this.users.findById(req.user_id))) throw new ParleyError('NOT_FOUND', `user ${req.user_id} not found`);
    return { group_ids: (await this.groups.groupsOf(req.user_id)).map((g) => g.id) };
  }

  @RpcHandler(AccessControlRpc.verifyKey)
  verifyKey(req: Req<'verifyKey'>) {
    return this.bots.verifyKey(req.api_key);
  }

  @RpcHandler(AccessControlRpc.changePassword)
  async changePassword(req: Req<'changePassword'>) {
    await this.users.changePassword(req.actor, req.current_password, req.new_password);
    return ok;
  }

  @RpcHandler(AccessControlRpc.deleteUser)
  async deleteUser(req: Req<'deleteUser'>) {
    await this.users.remove(req.actor, req.id);
    return ok;
  }

  @RpcHandler(AccessControlRpc.createGroup)
  createGroup(req: Req<'createGroup'>) {
    return this.groups.create(req.actor, req.name, req.remark);
  }

  @RpcHandler(AccessControlRpc.listGroups)
  listGroups(req: Req<'listGroups'>) {
    return this.groups.list(req.actor, req.page);
  }

  @RpcHandler(AccessControlRpc.updateGroup)
  updateGroup(req: Req<'updateGroup'>) {
    return this.groups.update(req.actor, req.id, req.patch);
  }

  @RpcHandler(AccessControlRpc.deleteGroup)
  async deleteGroup(req: Req<'deleteGroup'>) {
    await this.groups.remove(req.actor, req.id);
    return ok;
  }

  @RpcHandler(AccessControlRpc.listMembers)
  listMembers(req: Req<'listMembers'>) {
    return this.groups.members(req.actor, req.id, req.page);
  }

  @RpcHandler(AccessControlRpc.putMember)
  putMember(req: Req<'putMember'>) {
    return this.groups.putMember(req.actor, req.id, req.user_id, req.is_group_admin);
  }

  @RpcHandler(AccessControlRpc.deleteMember)
  async deleteMember(req: Req<'deleteMember'>) {
    await this.groups.removeMember(req.actor, req.id, req.user_id);
    return ok;
  }

  @RpcHandler(AccessControlRpc.createRole)
  createRole(req: Req<'createRole'>) {
    return this.roles.create(req.actor, req.name);
  }

  @RpcHandler(AccessControlRpc.listRoles)
  listRoles(req: Req<'listRoles'>) {
    return this.roles.list(req.actor, req.page);
  }

  @RpcHandler(AccessControlRpc.getGrants)
  getGrants(req: Req<'getGrants'>) {
    return this.roles.grants(req.actor, req.id);
  }

  @RpcHandler(AccessControlRpc.putGrants)
  putGrants(req: Req<'putGrants'>) {
    return this.roles.replaceGrants(req.actor, req.id, req.grants);
  }

  @RpcHandler(AccessControlRpc.putUserRole)
  putUserRole(req: Req<'putUserRole'>) {
    return this.roles.assign(req.actor, req.user_id, req.role_id);
  }

  @RpcHandler(AccessControlRpc.deleteUserRole)
  async deleteUserRole(req: Req<'deleteUserRole'>) {
    await this.roles.unassign(req.actor, req.user_id, req.role_id);
    return ok;
  }

  @RpcHandler(AccessControlRpc.createBot)
  createBot(req: Req<'createBot'>) {
    return this.bots.create(req.actor, req.name, req.description);
  }

  @RpcHandler(AccessControlRpc.listBots)
  listBots(req: Req<'listBots'>) {
    return this.bots.list(req.actor, req.page);
  }

  @RpcHandler(AccessControlRpc.getBot)
  getBot(req: Req<'getBot'>) {
    return this.bots.get(req.actor, req.id);
  }

  @RpcHandler(AccessControlRpc.updateBot)
  updateBot(req: Req<'updateBot'>) {
    return this.bots.update(req.actor, req.id, req.patch);
  }

  @RpcHandler(AccessControlRpc.deleteBot)
  async deleteBot(req: Req<'deleteBot'>) {
    await this.bots.remove(req.actor, req.id);
    return ok;
  }

  @RpcHandler(AccessControlRpc.natsCredentials)
  natsCredentials(req: Req<'natsCredentials'>) {
    return this.credentials.mint(req.actor, req.id, req.ttl_seconds);
  }

  @RpcHandler(AccessControlRpc.createKey)
  createKey(req: Req<'createKey'>) {
    return this.bots.createKey(req.actor, req.id, req.expires_at);
  }

  @RpcHandler(AccessControlRpc.listKeys)
  listKeys(req: Req<'listKeys'>) {
    return this.bots.listKeys(req.actor, req.id, req.page);
  }

  @RpcHandler(AccessControlRpc.deleteKey)
  async deleteKey(req: Req<'deleteKey'>) {
    await this.bots.revokeKey(req.actor, req.id, req.key_id);
    return ok;
  }
}
