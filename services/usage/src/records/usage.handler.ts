import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import type { z } from 'zod';
import { UsageRpc } from '@parley/contracts';
import { RpcHandler } from '@parley/kit';

@Injectable()
export class UsageHandler {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  @RpcHandler(UsageRpc.sessionTotals)
  async sessionTotals(req: z.output<typeof UsageRpc.sessionTotals.request>) {
    const [row] = await this.orm.em
      .fork()
      .execute<
        { requests: string; input_tokens: string; output_tokens: string; total_tokens: string; cost: string | null }[]
      >(
        `select count(*) as requests, coalesce(sum(input_tokens), 0) as input_tokens, coalesce(sum(output_tokens), 0) as output_tokens,
              coalesce(sum(total_tokens), 0) as total_tokens, sum(cost)::text as cost
       from usage_records where session_id = ?`,
        [req.session_id],
      );
    return {
      requests: Number(row?.requests ?? 0),
      input_tokens: Number(row?.input_tokens ?? 0),
      output_tokens: Number(row?.output_tokens ?? 0),
      total_tokens: Number(row?.total_tokens ?? 0),
      cost: row?.cost ?? null,
    };
  }
}
