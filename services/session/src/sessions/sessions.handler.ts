import { Controller, Inject } from '@nestjs/common';
import type { z } from 'zod';
import { SessionAccessRpc, SessionRpc } from '@parley/contracts';
import { RpcHandler } from '@parley/kit';
import { SessionsService } from './sessions.service';

type Req<K extends keyof typeof SessionRpc> = z.output<(typeof SessionRpc)[K]['request']>;

@Controller()
export class SessionsHandler {
  constructor(@Inject(SessionsService) private readonly sessions: SessionsService) {}

  @RpcHandler(SessionRpc.create)
  create(req: Req<'create'>) {
    return this.sessions.create(req);
  }

  @RpcHandler(SessionRpc.get)
  get(req: Req<'get'>) {
    return this.sessions.get(req.actor, req.id);
  }

  @RpcHandler(SessionRpc.list)
  list(req: Req<'list'>) {
    return this.sessions.list(req);
  }

  @RpcHandler(SessionRpc.update)
  update(req: Req<'update'>) {
    return this.sessions.update(req);
  }

  @RpcHandler(SessionRpc.remove)
  remove(req: Req<'remove'>) {
    return this.sessions.remove(req.actor, req.id);
  }

  @RpcHandler(SessionAccessRpc)
  authorize(req: z.output<typeof SessionAccessRpc.request>) {
    return this.sessions.authorize(req.actor, req.id, req.action);
  }
}
