import type { Principal } from '@parley/contracts';
import { allowedLocally } from './sessions.service';
import type { Session } from './session.entity';

const owner = '01900000-0000-7000-8000-00000000000a';
const botId = '01900000-0000-7000-8000-0000000000b0';
const session = { userId: owner, botId } as Session;

const cases: [string, Principal, 'read' | 'write' | 'delete', boolean | undefined][] = [
  ['owner reads', { type: 'user', id: owner, is_admin: false }, 'read', true],
  ['owner deletes', { type: 'user', id: owner, is_admin: false }, 'delete', true],
  [
    'stranger: ask access',
    { type: 'user', id: '01900000-0000-7000-8000-000000000999', is_admin: false },
    'read',
    undefined,
  ],
  ['admin deletes', { type: 'user', id: '01900000-0000-7000-8000-000000000999', is_admin: true }, 'delete', true],
  ['its bot writes', { type: 'bot', id: botId }, 'write', true],
  ['its bot deletes: ask access', { type: 'bot', id: botId }, 'delete', undefined],
  ['another bot: ask access', { type: 'bot', id: '01900000-0000-7000-8000-0000000000b1' }, 'read', undefined],
];

describe(allowedLocally.name, () => {
  it.each(cases)('%s', (_, actor, action, expected) => {
    expect(allowedLocally(actor, session, action)).toBe(expected);
  });
});
