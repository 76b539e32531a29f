import { Controller, Inject } from '@nestjs/common';
import type { z } from 'zod';
import { MessageRpc, SessionScopeFenceRpc } from '@parley/contracts';
import { RpcHandler } from '@parley/kit';
import { MessagesService } from './messages.service';

type Req<K extends keyof typeof MessageRpc> = z.output<(typeof MessageRpc)[K]['request']>;

@Controller()
export class MessagesHandler {
  constructor(@Inject(MessagesService) private readonly messages: MessagesService) {}

  @RpcHandler(MessageRpc.append)
  append(req: Req<'append'>) {
    return this.messages.append(req.actor, req.session_id, req.message);
  }

  @RpcHandler(MessageRpc.appendBatch)
  async appendBatch(req: Req<'appendBatch'>) {
    return { items: await this.messages.appendBatch(req.actor, req.session_id, req.messages) };
  }

  @RpcHandler(MessageRpc.list)
  list(req: Req<'list'>) {
    return this.messages.list(req.actor, req.session_id, req.order, req.page);
  }

  @RpcHandler(MessageRpc.after)
  after(req: Req<'after'>) {
    return this.messages.after(req.actor, req.session_id, req.after_seq, req.limit);
  }

  @RpcHandler(MessageRpc.latest)
  latest(req: Req<'latest'>) {
    return this.messages.latest(req.actor, req.session_id);
  }

  @RpcHandler(MessageRpc.feedback)
  feedback(req: Req<'feedback'>) {
    return this.messages.feedback(req.actor, req.id, req.body);
  }

  @RpcHandler(MessageRpc.setSensitive)
  setSensitive(req: Req<'setSensitive'>) {
    return this.messages.setSensitive(req.actor, req.id, req.sensitive_status);
  }

  @RpcHandler(SessionScopeFenceRpc)
  async fence(req: z.output<typeof SessionScopeFenceRpc.request>) {
    const scope = { id: req.session_id, user_id: req.user_id, bot_id: req.bot_id, group_ids: req.group_ids };
    await this.messages.fence(scope, new Date(req.until));
    return { session_id: req.session_id };
  }

  @RpcHandler(MessageRpc.search)
  search(req: Req<'search'>) {
    return this.messages.search(req.actor, req.scope, req);
  }
}
