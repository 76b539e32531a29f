import { sizeOf } from './message-size';

describe('message size', () => {
  const stored = {
    id: '01900000-0000-7000-8000-000000000001',
    session_id: '01900000-0000-7000-8000-000000000002',
    role: 'assistant',
    content: 'quote " backslash \\ newline \n control \u0001 two-byte é three-byte 北京 four-byte 😀',
    tokens: 12,
    metadata: { lang: 'zh', nested: { list: [1, 2.5, null] } },
    media: [{ type: 'image', url: 'https://x/y.png' }],
    client_message_id: 'c-1',
    created_at: new Date('2026-11-24T10:00:00.123Z'),
  };

  it('never counts less than the JSON a list answers for the message, whatever it becomes', () => {
    const size = sizeOf(stored);
    const { created_at, ...rest } = stored;
    for (const seq of [1, 999, 2 ** 31 - 1]) {
      for (const feedback of [null, 'like', 'dislike']) {
        for (const copied of [false, true]) {
          for (const sensitive_status of ['unchecked', 'pass', 'violation']) {
            const listed = { ...rest, seq, feedback, copied, sensitive_status, created_at: created_at.toISOString() };
            expect(Buffer.byteLength(JSON.stringify(listed))).toBeLessThanOrEqual(size);
          }
        }
      }
    }
  });

  it('counts UTF-8 bytes and JSON escapes, not characters', () => {
    const plain = sizeOf({ ...stored, content: 'a' });
    expect(sizeOf({ ...stored, content: 'é' })).toBe(plain + 1);
    expect(sizeOf({ ...stored, content: '😀' })).toBe(plain + 3);
    expect(sizeOf({ ...stored, content: '"' })).toBe(plain + 1);
    expect(sizeOf({ ...stored, content: '\u0001' })).toBe(plain + 5);
  });
});
