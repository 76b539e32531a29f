import type { BatchItem, BatchVerdict } from '@parley/kit';
import type { BotDirectory } from '../access/bot-directory';

const OK: BatchVerdict = { ok: true };

/** Refuses the events of unknown or disabled bots; the rest go on. */
export async function verdictsByBot<T extends { bot_id: string }>(
  bots: BotDirectory,
  items: BatchItem<T>[],
): Promise<BatchVerdict[]> {
  const standings = await bots.standings(items.map((i) => i.event.bot_id));
  return items.map((item) => {
    switch (standings.get(item.event.bot_id)) {
      case 'enabled':
        return OK;
      case 'disabled':
        return { ok: false, code: 'BOT_DISABLED', reason: `bot ${item.event.bot_id} is disabled` };
      case 'unknown':
      case undefined:
        return { ok: false, code: 'UNKNOWN_BOT', reason: `no bot ${item.event.bot_id}` };
    }
  });
}
