import { reactive } from 'vue';
import { auth, get, type Page } from './api';

/** Names for ids the user may see: bots they can read, and users (admins: all; group admins: their members). */
export const names = reactive({
  bots: [] as { id: string; name: string; enabled: boolean; owner_id: string }[],
  users: [] as { id: string; username: string }[],
});

async function all<T>(path: string): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<T> = await get<Page<T>>(path, { limit: 200, cursor: cursor ?? undefined });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < 2000);
  return items;
}

export async function loadNames(): Promise<void> {
  const me = auth.me;
  if (!me) return;
  names.bots = await all('/api/v1/bots');
  if (me.is_admin) {
    names.users = await all('/api/v1/users');
  } else {
    const seen = new Map<string, string>([[me.id, me.username]]);
    for (const group of me.groups.filter((g) => g.is_group_admin)) {
      for (const m of await all<{ user_id: string; username: string }>(`/api/v1/groups/${group.id}/members`)) {
        seen.set(m.user_id, m.username);
      }
    }
    names.users = [...seen].map(([id, username]) => ({ id, username }));
  }
}

export const botName = (id: string | null | undefined) =>
  id ? (names.bots.find((b) => b.id === id)?.name ?? id.slice(0, 8)) : '—';
export const userName = (id: string | null | undefined) =>
  id ? (names.users.find((u) => u.id === id)?.username ?? id.slice(0, 8)) : '—';

export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}
