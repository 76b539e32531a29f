import { Controller, Inject } from '@nestjs/common';
import type { z } from 'zod';
import { AccessRpc } from '@parley/contracts';
import { RpcHandler } from '@parley/kit';
import { requireAdmin } from '../require-admin';
import { UsersService } from './users.service';

type Req<K extends keyof typeof AccessRpc> = z.output<(typeof AccessRpc)[K]['request']>;

@Controller()
export class UsersHandler {
  constructor(@Inject(UsersService) private readonly users: UsersService) {}

  @RpcHandler(AccessRpc.createUser)
  create(req: Req<'createUser'>) {
    requireAdmin(req.actor);
    return this.users.create(req);
  }

  @RpcHandler(AccessRpc.listUsers)
  list(req: Req<'listUsers'>) {
    return this.users.list(req);
  }

  @RpcHandler(AccessRpc.updateUser)
  update(req: Req<'updateUser'>) {
    return this.users.update(req);
  }
}
