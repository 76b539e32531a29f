import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import type { Subscription } from '@nats-io/transport-node';
import { AccessControlRpc, DomainEvents } from '@parley/contracts';
import { LOGGER, Nats, RpcClient, type Logger } from '@parley/kit';

export type BotStanding = 'enabled' | 'disabled' | 'unknown';

const KNOWN_TTL_MS = 30_000;
const UNKNOWN_TTL_MS = 5_000;
const MAX_ENTRIES = 100_000;

/**
 * Which bots exist and are enabled, as the access service says: asked in batches, kept for
 * seconds, and forgotten at once when `evt.access.changed` names a bot. Every instance
 * listens on its own (a core subscription, not a shared consumer), and drops everything
 * after a reconnect, since it may have missed changes meanwhile.
 */
@Injectable()
export class BotDirectory implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly entries = new Map<string, { standing: BotStanding; until: number }>();
  private subscription: Subscription | undefined;
  private statusWatch: Promise<void> | undefined;

  constructor(
    @Inject(RpcClient) private readonly rpc: RpcClient,
    @Inject(Nats) private readonly nats: Nats,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    this.subscription = this.nats.connection.subscribe(this.nats.subject(DomainEvents.accessChanged.subject), {
      callback: (err, msg) => {
        if (err) return;
        const parsed = DomainEvents.accessChanged.schema.safeParse(safeJson(msg.data));
        if (parsed.success && parsed.data.kind === 'bot') this.entries.delete(parsed.data.id);
      },
    });
    this.statusWatch = (async () => {
      for await (const status of this.nats.connection.status()) {
        if (status.type === 'reconnect') {
          this.entries.clear();
          this.logger.info('reconnected to NATS; bot standings will be asked again');
        }
      }
    })();
  }

  /** The standing of each bot; asks the access service about those not known. */
  async standings(botIds: string[]): Promise<Map<string, BotStanding>> {
    const now = Date.now();
    const answer = new Map<string, BotStanding>();
    const missing: string[] = [];
    for (const id of new Set(botIds)) {
      const entry = this.entries.get(id);
      if (entry && entry.until > now) answer.set(id, entry.standing);
      else missing.push(id);
    }
    for (let i = 0; i < missing.length; i += 500) {
      const ids = missing.slice(i, i + 500);
      const { bots } = await this.rpc.call(AccessControlRpc.botStatus, { ids });
      const found = new Map(bots.map((b) => [b.id, b.enabled]));
      if (this.entries.size > MAX_ENTRIES) this.entries.clear();
      for (const id of ids) {
        const enabled = found.get(id);
        const standing: BotStanding = enabled === undefined ? 'unknown' : enabled ? 'enabled' : 'disabled';
        answer.set(id, standing);
        this.entries.set(id, { standing, until: now + (standing === 'unknown' ? UNKNOWN_TTL_MS : KNOWN_TTL_MS) });
      }
    }
    return answer;
  }

  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
  }
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}
