import { existsSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ROOT, cleanupRun, runId, startStack, stopStack, type Stack } from '../support/stack';
import { api, eventually } from '../support/http';

/**
 * The console end to end: a real headless Chromium (Debian's `chromium`; CHROMIUM_PATH overrides)
 * against the five services, with 20-second tokens so live views must refresh and reconnect.
 * A missing Chromium fails this suite. Each page's screenshot is written to docs/console/.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = join(ROOT, 'docs', 'console');
const PASSWORD = 'correct-horse-battery';

let stack: Stack;
let base: string;
let browser: Browser;
const adminPassword = randomBytes(12).toString('base64url');
/** Every request the console's pages made: method and URL. */
const requests: { method: string; url: string }[] = [];
const pageErrors: string[] = [];

interface Account {
  id: string;
  username: string;
  token: () => Promise<string>;
}

/** Logs in again when the last token is over 10 s old (tokens live 20 s here). */
function account(id: string, username: string, password: string): Account {
  let token = '';
  let at = 0;
  return {
    id,
    username,
    token: async () => {
      if (Date.now() - at > 10_000) {
        const res = await api('POST', '/api/v1/auth/login', { body: { username, password } });
        if (res.status !== 200) throw new Error(`login ${username}: ${res.status} ${JSON.stringify(res.body)}`);
        token = res.body.access_token;
        at = Date.now();
      }
      return token;
    },
  };
}

let admin: Account;
let alice: Account;
let bob: Account;
let bot: { id: string; api_key: string; name: string };

async function newUser(name: string): Promise<Account> {
  const username = `${name}-${Date.now().toString(36)}`;
  const res = await api('POST', '/api/v1/users', {
    token: await admin.token(),
    body: { username, password: PASSWORD },
  });
  if (res.status !== 201) throw new Error(`create ${name}: ${res.status}`);
  return account(res.body.id, username, PASSWORD);
}

async function newPage(context?: BrowserContext, width = 1280, height = 800): Promise<Page> {
  const ctx = context ?? (await browser.newContext({ viewport: { width, height }, timezoneId: 'UTC' }));
  const page = await ctx.newPage();
  page.on('request', (r) => requests.push({ method: r.method(), url: r.url() }));
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => {
    pageErrors.push(`dialog opened: ${d.message()}`);
    void d.dismiss();
  });
  // Before any page script: a hostile payload would call this, and CSP violations are collected.
  await page.addInitScript({
    content: `window.__pwned = []; window.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`,
  });
  return page;
}

async function signIn(page: Page, who: { username: string }, password = PASSWORD): Promise<void> {
  await page.goto(`${base}/console/`);
  await page.getByLabel('Username').fill(who.username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });

async function noScriptRan(page: Page): Promise<void> {
  const state = await page.evaluate('({ pwned: window.__pwned, csp: window.__csp })');
  expect(state).toEqual({ pwned: [], csp: [] });
}

/**
 * The outer HTML of every input, select, textarea and button shown on the page to which Chromium's
 * own accessibility tree gives no name (from a label, aria-label, aria-labelledby or text), and how
 * many controls were looked at.
 */
async function unnamedControls(page: Page): Promise<{ checked: number; unnamed: string[] }> {
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send('DOM.enable');
    await cdp.send('Accessibility.enable');
    const { root } = await cdp.send('DOM.getDocument', { depth: 0 });
    const { nodeIds } = await cdp.send('DOM.querySelectorAll', {
      nodeId: root.nodeId,
      selector: 'input:not([type=hidden]), select, textarea, button',
    });
    let checked = 0;
    const unnamed: string[] = [];
    for (const nodeId of nodeIds) {
      const { backendNodeId } = (await cdp.send('DOM.describeNode', { nodeId })).node;
      const { nodes } = await cdp.send('Accessibility.getPartialAXTree', { backendNodeId, fetchRelatives: false });
      const node = nodes.find((n) => n.backendDOMNodeId === backendNodeId);
      if (!node || node.ignored) continue; // not shown (display: none): nobody perceives it
      checked += 1;
      if (!String(node.name?.value ?? '').trim()) {
        unnamed.push((await cdp.send('DOM.getOuterHTML', { nodeId })).outerHTML.slice(0, 200));
      }
    }
    return { checked, unnamed };
  } finally {
    await cdp.detach();
  }
}

/** Every control on the page has an accessible name, and there are controls to look at. */
async function everyControlNamed(page: Page): Promise<void> {
  const { checked, unnamed } = await unnamedControls(page);
  expect({ path: new URL(page.url()).pathname, unnamed }).toEqual({ path: new URL(page.url()).pathname, unnamed: [] });
  expect(checked).toBeGreaterThan(0);
}

async function createSession(owner: Account, body: Record<string, unknown>) {
  const res = await api('POST', '/api/v1/sessions', { token: await owner.token(), body });
  expect(res.status).toBe(201);
  return res.body as { id: string; title: string };
}

async function append(token: string | { key: string }, sessionId: string, body: Record<string, unknown>) {
  const res = await api('POST', `/api/v1/sessions/${sessionId}/messages`, {
    ...(typeof token === 'string' ? { token } : { headers: { 'x-api-key': token.key } }),
    body,
  });
  expect(res.status).toBe(201);
  return res.body as { id: string; seq: number };
}

beforeAll(async () => {
  // A Chromium that cannot be found fails the suite: it never skips.
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium`);
  mkdirSync(SHOTS, { recursive: true });
  stack = await startStack(runId('console'), {
    PARLEY_ADMIN_USERNAME: 'admin',
    PARLEY_ADMIN_PASSWORD: adminPassword,
    JWT_TTL: '20s',
  });
  base = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
  process.env.E2E_GATEWAY_URL = base;
  admin = account('', 'admin', adminPassword);
  alice = await newUser('alice');
  bob = await newUser('bob');
  const created = await api('POST', '/api/v1/bots', { token: await alice.token(), body: { name: 'helper-bot' } });
  bot = created.body;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}, 150_000);

afterAll(async () => {
  await browser?.close();
  if (stack) {
    await stopStack(stack);
    await cleanupRun(stack.id);
  }
}, 60_000);

describe('the console', () => {
  let page: Page;

  it('is served under /console with a strict Content-Security-Policy, and is not in /openapi.json', async () => {
    for (const path of ['/console', '/console/', '/console/sessions/anything']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      const csp = res.headers.get('content-security-policy') ?? '';
      for (const directive of [
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "connect-src 'self'",
      ]) {
        expect(csp).toContain(directive);
      }
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).not.toContain('unsafe-eval');
      const html = await res.text();
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    }
    expect((await fetch(`${base}/console/assets/missing.js`)).status).toBe(404);
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/console'))).toEqual([]);
  });

  it('signs in with a username and password, keeping only the refresh token in sessionStorage', async () => {
    page = await newPage();
    await page.goto(`${base}/console/`);
    await page.getByLabel('Username').waitFor();
    await shot(page, 'sign-in');
    await page.getByLabel('Username').fill(alice.username);
    await page.getByLabel('Password').fill('wrong-password-here');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert').textContent()).resolves.toMatch(/\S/);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    const stored = await page.evaluate('Object.keys(sessionStorage)');
    expect(stored).toEqual(['parley.refresh_token']);
    expect(await page.evaluate('Object.keys(localStorage)')).toEqual([]);
  });

  let conversation: { id: string };

  it('lists a session created through the API with its counters', async () => {
    conversation = await createSession(alice, { title: 'Trip to Kyoto', bot_id: bot.id });
    const token = await alice.token();
    await append(token, conversation.id, { role: 'user', content: 'Where should we stay?', tokens: 5 });
    const answer = await append(token, conversation.id, {
      role: 'assistant',
      content: 'Near Gion; 祇園 is lovely.',
      tokens: 12,
      media: [{ type: 'link', url: 'https://example.org/gion', name: 'Gion guide' }],
    });
    await api('PUT', `/api/v1/messages/${answer.id}/feedback`, { token, body: { feedback: 'like', copied: true } });
    await page.goto(`${base}/console/sessions`);
    const row = page.locator(`tr[data-session="${conversation.id}"]`);
    await row.waitFor();
    // The session's counters follow its messages shortly after: the list is asked again until they do.
    await eventually(async () => {
      if ((await row.locator('[data-count="copied"]').textContent()) === '1') return true;
      await page.getByRole('button', { name: 'Apply filters' }).click();
      await page.waitForTimeout(300);
      return undefined;
    });
    expect(await row.locator('.title').textContent()).toBe('Trip to Kyoto');
    expect(await row.locator('[data-count="messages"]').textContent()).toBe('2');
    expect(await row.locator('[data-count="likes"]').textContent()).toBe('1');
    expect(await row.locator('[data-count="copied"]').textContent()).toBe('1');
  });

  it('opens the conversation and shows a message appended through the API without a reload', async () => {
    await page.locator(`tr[data-session="${conversation.id}"] .title`).click();
    await page.locator('li.msg[data-seq="2"]').waitFor();
    expect(await page.locator('li.msg[data-seq="1"] .content').textContent()).toBe('Where should we stay?');
    expect(await page.locator('li.msg[data-seq="2"] .role').textContent()).toBe('assistant');
    expect(await page.locator('li.msg[data-seq="2"] a').getAttribute('href')).toBe('https://example.org/gion');
    await page.locator('[data-field="live"]').filter({ hasText: 'live' }).waitFor();
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));
    await append({ key: bot.api_key }, conversation.id, { role: 'assistant', content: 'Also try Arashiyama.' });
    await page.locator('li.msg[data-seq="3"]').waitFor({ timeout: 10_000 });
    expect(await page.locator('li.msg[data-seq="3"] .content').textContent()).toBe('Also try Arashiyama.');
    expect(navigations).toEqual([]);
    await page.locator('[data-count="messages"]').filter({ hasText: '3' }).waitFor();
    await shot(page, 'conversation');
    const phone = await newPage(undefined, 390, 844);
    await signIn(phone, alice);
    await phone.goto(`${base}/console/sessions/${conversation.id}`);
    await phone.locator('li.msg[data-seq="3"]').waitFor();
    await shot(phone, 'conversation-phone');
    await phone.context().close();
  });

  it('narrows the list with its filters', async () => {
    const alpha = await createSession(alice, { title: 'alpha plans' });
    const beta = await createSession(alice, { title: 'beta plans' });
    await api('PATCH', `/api/v1/sessions/${beta.id}`, { token: await alice.token(), body: { status: 'archived' } });
    await page.getByRole('link', { name: 'Sessions', exact: true }).click();
    await page.locator(`tr[data-session="${beta.id}"]`).waitFor();
    const shown = () =>
      page.locator('tr[data-session]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-session')));

    await page.getByLabel('Title').fill('alpha');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.locator(`tr[data-session="${beta.id}"]`).waitFor({ state: 'detached' });
    expect(await shown()).toEqual([alpha.id]);

    await page.getByLabel('Title').fill('');
    await page.locator('select[name=status]').selectOption('archived');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.locator(`tr[data-session="${alpha.id}"]`).waitFor({ state: 'detached' });
    expect(await shown()).toEqual([beta.id]);

    await page.locator('select[name=status]').selectOption('');
    await page.locator('select[name=feedback]').selectOption('like');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.locator(`tr[data-session="${beta.id}"]`).waitFor({ state: 'detached' });
    expect(await shown()).toEqual([conversation.id]);

    await page.getByRole('button', { name: 'Clear' }).click();
    await page.locator(`tr[data-session="${beta.id}"]`).waitFor();
    expect((await shown()).sort()).toEqual([alpha.id, beta.id, conversation.id].sort());

    // Clear pressed while a filtered page is still on its way: that older answer, arriving
    // last, must not replace the cleared list.
    let staleAnswered = false;
    const filtered = '**/api/v1/sessions?*feedback=like*';
    await page.route(filtered, async (route) => {
      const response = await route.fetch();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await route.fulfill({ response });
      staleAnswered = true;
    });
    await page.locator('select[name=feedback]').selectOption('like');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByRole('button', { name: 'Clear' }).click();
    await eventually(async () => (staleAnswered ? true : undefined));
    await page.unroute(filtered);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await shown()).sort()).toEqual([alpha.id, beta.id, conversation.id].sort());
    await shot(page, 'sessions');
  });

  it("shows a bot's usage totals as reported", async () => {
    const started = Date.now() - 120_000;
    const events = [1, 2, 3].map((i) => ({
      request_id: `console-${i}`,
      bot_id: bot.id,
      status: 'completed',
      provider: 'openai',
      model: i === 3 ? 'gpt-4o-mini' : 'gpt-4o',
      channel: 'web',
      input_tokens: 100 * i,
      output_tokens: 10 * i,
      started_at: new Date(started + i * 1000).toISOString(),
      completed_at: new Date(started + i * 1000 + 500).toISOString(),
    }));
    const posted = await api('POST', '/api/v1/usage/events', {
      headers: { 'x-api-key': bot.api_key },
      body: { events },
    });
    expect(posted.status).toBe(202);
    // Stored by the usage service (read through the API only to know when to look at the page).
    await eventually(async () => {
      const r = await api('GET', `/api/v1/usage/records?bot_id=${bot.id}`, { token: await alice.token() });
      return r.body.items?.length === 3 ? true : undefined;
    });
    await page.getByRole('link', { name: 'Usage', exact: true }).click();
    await page.locator('select[name=bot_id]').selectOption(bot.id);
    await page.locator('select[name=split]').selectOption('model');
    await page.getByRole('button', { name: 'Show' }).click();
    const total = (name: string) => page.locator(`[data-total="${name}"]`).textContent();
    // The page shows a summary as it opens (split by bot): wait for the one asked for.
    await page.locator('[data-testid="usage-rows"]').filter({ hasText: 'gpt-4o-mini' }).waitFor();
    await page.locator('[data-total="requests"]').filter({ hasText: '3' }).waitFor();
    expect((await total('requests'))?.trim()).toBe('3');
    expect((await total('input_tokens'))?.trim()).toBe('600');
    expect((await total('output_tokens'))?.trim()).toBe('60');
    expect((await total('total_tokens'))?.trim()).toBe('660');
    expect((await total('unpriced_requests'))?.trim()).toBe('3');
    const table = (await page.locator('[data-testid="usage-rows"]').textContent()) ?? '';
    expect(table).toContain('gpt-4o-mini');
    expect(await page.locator('[data-testid="usage-records"] tbody tr').count()).toBe(3);
    await shot(page, 'usage');
  });

  it("shows a bot's quota against the budget set here, and its activity feed", async () => {
    const eventId = `console-act-${Date.now().toString(36)}`;
    const reported = await api('POST', `/api/v1/bots/${bot.id}/activity`, {
      headers: { 'x-api-key': bot.api_key },
      body: {
        event_id: eventId,
        bot_id: bot.id,
        event_type: 'tool.call',
        channel: 'web',
        detail: 'looked up <b>Gion</b> hotels',
        occurred_at: new Date().toISOString(),
      },
    });
    expect(reported.status).toBe(202);
    // Stored, and the usage above counted in this month's quota (read through the API only to know when to look).
    await eventually(async () => {
      const token = await alice.token();
      const [feed, quota] = await Promise.all([
        api('GET', `/api/v1/bots/${bot.id}/activity`, { token }),
        api('GET', `/api/v1/bots/${bot.id}/quota`, { token }),
      ]);
      return feed.body.items?.some((e: { event_id: string }) => e.event_id === eventId) &&
        quota.body.used_tokens === 660
        ? true
        : undefined;
    });
    await page.getByRole('link', { name: 'Bot usage', exact: true }).click();
    await page.locator('select[name=usage-bot]').selectOption(bot.id);
    await page.getByRole('heading', { name: 'Bot usage: helper-bot' }).waitFor();
    await page.locator('[data-quota="tokens"]').filter({ hasText: '660 / no limit' }).waitFor();
    await page.getByLabel('Period').selectOption('month');
    await page.getByLabel('Max tokens').fill('1000');
    await page.getByRole('button', { name: 'Save budget' }).click();
    await page.locator('[data-quota="tokens"]').filter({ hasText: '660 / 1000' }).waitFor();
    await page.locator('[data-quota="within"]').waitFor();
    expect(await page.locator('meter[aria-labelledby="gauge-tokens"]').getAttribute('value')).toBe('660');
    const row = page.locator(`tr[data-event="${eventId}"]`);
    expect(await row.locator('.detail').textContent()).toBe('looked up <b>Gion</b> hotels');
    await shot(page, 'bot-usage');
    // Below what was used: flagged as exceeded.
    await page.getByLabel('Max tokens').fill('600');
    await page.getByRole('button', { name: 'Save budget' }).click();
    await page.locator('[data-quota="exceeded"]').waitFor();
    expect(await page.locator('[data-quota="tokens"]').textContent()).toBe('660 / 600');
    const quota = await api('GET', `/api/v1/bots/${bot.id}/quota`, { token: await alice.token() });
    expect(quota.body).toMatchObject({ period: 'month', used_tokens: 660, max_tokens: 600, exceeded: true });
  });

  it('creates a bot and shows its key once', async () => {
    await page.getByRole('link', { name: 'Bots', exact: true }).click();
    await page.getByLabel('Name').fill('console-made-bot');
    await page.getByRole('button', { name: 'Create bot' }).click();
    const secret = page.locator('.secret-value');
    await secret.waitFor();
    const key = ((await secret.textContent()) ?? '').trim();
    const me = await api('GET', '/api/v1/me', { headers: { 'x-api-key': key } });
    expect(me.body).toMatchObject({ type: 'bot', name: 'console-made-bot' });
    await shot(page, 'bots');
    await page.getByRole('button', { name: 'Done' }).click();
    await secret.waitFor({ state: 'detached' });
    await page.reload();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    await page.getByRole('cell', { name: 'console-made-bot' }).waitFor();
    expect(await page.content()).not.toContain(key);
  });

  it('archives, reopens, exports and deletes a conversation from its page', async () => {
    const doomed = await createSession(alice, { title: 'Packing list', bot_id: bot.id });
    const token = await alice.token();
    await append(token, doomed.id, { role: 'user', content: 'What should I pack?' });
    await append(token, doomed.id, { role: 'assistant', content: 'An umbrella; 梅雨 is coming.' });
    const status = async () => (await api('GET', `/api/v1/sessions/${doomed.id}`, { token: await alice.token() })).body;
    await page.goto(`${base}/console/sessions/${doomed.id}`);
    await page.locator('li.msg[data-seq="2"]').waitFor();
    await everyControlNamed(page);

    await page.getByRole('button', { name: 'Archive', exact: true }).click();
    await page.locator('[data-field="status"]').filter({ hasText: 'archived' }).waitFor();
    expect((await status()).status).toBe('archived');
    await page.getByRole('button', { name: 'Unarchive' }).click();
    await page.locator('[data-field="status"]').filter({ hasText: 'active' }).waitFor();
    expect((await status()).status).toBe('active');

    // The exports are saved as files: what was saved holds the session and its messages.
    const save = async (button: string) => {
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: button }).click(),
      ]);
      return { name: download.suggestedFilename(), text: await readFile((await download.path())!, 'utf8') };
    };
    const json = await save('Export JSON');
    expect(json.name).toBe(`session-${doomed.id}.json`);
    const exported = JSON.parse(json.text) as { session: { id: string }; messages: { seq: number; content: string }[] };
    expect(exported.session.id).toBe(doomed.id);
    expect(exported.messages.map((m) => [m.seq, m.content])).toEqual([
      [1, 'What should I pack?'],
      [2, 'An umbrella; 梅雨 is coming.'],
    ]);
    const markdown = await save('Export Markdown');
    expect(markdown.name).toBe(`session-${doomed.id}.md`);
    expect(markdown.text).toMatch(/^# Packing list\n/);
    expect(markdown.text).toContain('### 1. user');
    expect(markdown.text).toContain('What should I pack?');
    expect(markdown.text).toContain('### 2. assistant');
    expect(markdown.text).toContain('An umbrella; 梅雨 is coming.');

    // Delete asks first; keeping it deletes nothing.
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByRole('button', { name: 'Keep it' }).click();
    expect((await status()).status).toBe('active');
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByRole('button', { name: 'Confirm delete' }).click();
    await page.locator(`tr[data-session="${conversation.id}"]`).waitFor();
    expect(new URL(page.url()).pathname).toBe('/console/sessions');
    expect(await page.locator(`tr[data-session="${doomed.id}"]`).count()).toBe(0);
    const gone = await api('GET', `/api/v1/sessions/${doomed.id}`, { token: await alice.token() });
    expect(gone.status).toBe(404);
  });

  it('shows messages older than the first page after Load older messages', async () => {
    const long = await createSession(alice, { title: 'A long chat' });
    // The console shows the newest page the API gives (up to 50), then pages back.
    const batch = await api('POST', `/api/v1/sessions/${long.id}/messages/batch`, {
      token: await alice.token(),
      body: { messages: Array.from({ length: 60 }, (_, i) => ({ role: 'user', content: `line ${i + 1}` })) },
    });
    expect(batch.status).toBe(201);
    await page.goto(`${base}/console/sessions/${long.id}`);
    await page.locator('li.msg[data-seq="60"]').waitFor();
    const seqs = () => page.locator('li.msg').evaluateAll((ls) => ls.map((l) => Number(l.getAttribute('data-seq'))));
    expect(await seqs()).toEqual(Array.from({ length: 50 }, (_, i) => i + 11));
    await page.getByRole('button', { name: 'Load older messages' }).click();
    await page.locator('li.msg[data-seq="1"]').waitFor();
    expect(await seqs()).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(await page.locator('li.msg[data-seq="1"] .content').textContent()).toBe('line 1');
    // Nothing older is left: the control is gone.
    expect(await page.getByRole('button', { name: 'Load older messages' }).count()).toBe(0);
  });

  it('finds a Chinese substring through the search page', async () => {
    const trip = await createSession(alice, { title: 'Kyoto diary' });
    await append(await alice.token(), trip.id, { role: 'user', content: '我们的京都之旅从伏见稻荷开始' });
    await page.getByRole('link', { name: 'Search', exact: true }).click();
    await page.getByRole('heading', { name: 'Search messages' }).waitFor();
    await everyControlNamed(page);
    await page.getByLabel('Words (English or Chinese)').fill('都之旅从伏');
    // The message service learns of the new session shortly after: search again until it does.
    const hit = page.locator('li.msg', { hasText: '我们的京都之旅从伏见稻荷开始' });
    await eventually(async () => {
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await page.waitForTimeout(300);
      return (await hit.count()) === 1 ? true : undefined;
    });
    await hit.getByRole('link').click();
    await page.locator('li.msg[data-seq="1"]').waitFor();
    expect(new URL(page.url()).pathname).toBe(`/console/sessions/${trip.id}`);
    expect(await page.locator('.session-title').textContent()).toBe('Kyoto diary');
  });

  it('revokes a bot key from the Bots page, after which the API refuses that key', async () => {
    const made = await api('POST', `/api/v1/bots/${bot.id}/keys`, { token: await alice.token(), body: {} });
    expect(made.status).toBe(201);
    const { prefix, api_key: key } = made.body as { prefix: string; api_key: string };
    expect((await api('GET', '/api/v1/me', { headers: { 'x-api-key': key } })).status).toBe(200);
    await page.getByRole('link', { name: 'Bots', exact: true }).click();
    await page.locator(`tr[data-bot="${bot.id}"]`).getByRole('button', { name: 'Keys' }).click();
    const keys = page.getByRole('region', { name: 'Keys' });
    const row = keys.getByRole('row').filter({ has: page.getByText(prefix, { exact: true }) });
    await row.waitFor();
    expect(await row.getByRole('cell', { name: 'active', exact: true }).count()).toBe(1);
    await everyControlNamed(page);
    await row.getByRole('button', { name: 'Revoke' }).click();
    await row.getByRole('cell', { name: 'revoked', exact: true }).waitFor();
    expect(await row.getByRole('button', { name: 'Revoke' }).count()).toBe(0);
    // Refused within a second (API.md); the bot's other key still works.
    const refused = await eventually(async () => {
      const r = await api('GET', '/api/v1/me', { headers: { 'x-api-key': key } });
      return r.status === 401 ? r : undefined;
    }, 2_500);
    expect(refused.status).toBe(401);
    expect((await api('GET', '/api/v1/me', { headers: { 'x-api-key': bot.api_key } })).status).toBe(200);
  });

  it("shows a plain user no admin pages and none of another user's sessions", async () => {
    const hidden = await createSession(bob, { title: 'bob private plans' });
    await page.getByRole('link', { name: 'Sessions', exact: true }).click();
    await page.locator(`tr[data-session="${conversation.id}"]`).waitFor();
    expect(await page.locator(`tr[data-session="${hidden.id}"]`).count()).toBe(0);
    expect(await page.content()).not.toContain('bob private plans');
    expect(await page.locator('[data-admin]').count()).toBe(0);
    expect(await page.getByRole('link', { name: 'Users' }).count()).toBe(0);
    await page.goto(`${base}/console/users`);
    await page.getByRole('heading', { name: 'Not found' }).waitFor();
    await page.goto(`${base}/console/sessions/${hidden.id}`);
    await page.getByRole('alert').waitFor();
    expect(await page.content()).not.toContain('bob private plans');
  });

  it('lets an admin manage users and groups, and see every user', async () => {
    const adminPage = await newPage();
    await signIn(adminPage, admin, adminPassword);
    await adminPage.getByRole('link', { name: 'Users' }).click();
    const username = `carol-${Date.now().toString(36)}`;
    await adminPage.getByLabel('Username').fill(username);
    await adminPage.getByLabel('Password').fill(PASSWORD);
    await adminPage.getByRole('button', { name: 'Create user' }).click();
    await adminPage.getByRole('cell', { name: username, exact: true }).waitFor();
    await adminPage.getByRole('cell', { name: bob.username, exact: true }).waitFor();
    const carol = await api('POST', '/api/v1/auth/login', { body: { username, password: PASSWORD } });
    expect(carol.status).toBe(200);
    await shot(adminPage, 'users');
    await adminPage.getByRole('link', { name: 'Groups', exact: true }).click();
    await adminPage.getByLabel('Name').fill('support-team');
    await adminPage.getByRole('button', { name: 'Create group' }).click();
    await adminPage.getByRole('cell', { name: 'support-team' }).waitFor();
    await adminPage.locator('tr', { hasText: 'support-team' }).getByRole('button', { name: 'Members' }).click();
    await adminPage.locator('select[name=member-user]').selectOption({ label: bob.username });
    await adminPage.getByRole('button', { name: 'Add or update' }).click();
    await adminPage.getByRole('cell', { name: bob.username, exact: true }).waitFor();
    await shot(adminPage, 'groups');
    // An admin may look at bob's sessions through the user filter.
    await adminPage.getByRole('link', { name: 'Sessions', exact: true }).click();
    await adminPage.locator('select[name=user_id]').selectOption({ label: bob.username });
    await adminPage.getByRole('button', { name: 'Apply filters' }).click();
    await adminPage.getByRole('link', { name: 'bob private plans' }).waitFor();
    await adminPage.context().close();
  });

  it('lets an admin add a price, and create a role with a grant on a bot', async () => {
    const adminPage = await newPage();
    await signIn(adminPage, admin, adminPassword);
    await adminPage.getByRole('link', { name: 'Prices', exact: true }).click();
    const model = `console-model-${Date.now().toString(36)}`;
    await adminPage.locator('input[name=price-provider]').fill('acme');
    await adminPage.locator('input[name=price-model]').fill(model);
    await adminPage.getByLabel('Input per million').fill('2.5');
    await adminPage.getByLabel('Output per million').fill('10');
    await adminPage.getByRole('button', { name: 'Save price' }).click();
    const price = adminPage.locator(`tr[data-price="acme/${model}"]`);
    await price.waitFor();
    expect(Number(await price.locator('[data-field="input"]').textContent())).toBe(2.5);
    expect(Number(await price.locator('[data-field="output"]').textContent())).toBe(10);
    const listed = await api('GET', `/api/v1/usage/prices?model=${model}`, { token: await admin.token() });
    expect(listed.body.items).toMatchObject([{ provider: 'acme', model, currency: 'USD' }]);
    await shot(adminPage, 'prices');

    await adminPage.getByRole('link', { name: 'Roles', exact: true }).click();
    const roleName = `readers-${Date.now().toString(36)}`;
    await adminPage.getByLabel('Role name').fill(roleName);
    await adminPage.getByRole('button', { name: 'Create role' }).click();
    await adminPage.getByRole('heading', { name: `Grants of ${roleName}` }).waitFor();
    await adminPage.locator('select[name=grant-resource]').selectOption(bot.id);
    await adminPage.locator('select[name=grant-permission]').selectOption('read');
    await adminPage.getByRole('button', { name: 'Add grant' }).click();
    await adminPage.getByRole('button', { name: 'Save grants' }).click();
    await adminPage
      .getByRole('status')
      .filter({ hasText: `Grants of ${roleName} saved.` })
      .waitFor();
    // Read back from the server on a fresh page.
    await adminPage.reload();
    await adminPage.getByRole('button', { name: `Grants of ${roleName}` }).click();
    const grant = adminPage.locator(`tr[data-grant="bot:${bot.id}"]`);
    await grant.waitFor();
    expect((await grant.locator('td').nth(1).textContent())?.trim()).toBe('helper-bot');
    expect(await grant.locator('select[data-field=permission]').inputValue()).toBe('read');
    const roles = await api('GET', '/api/v1/roles?limit=200', { token: await admin.token() });
    const role = roles.body.items.find((r: { name: string }) => r.name === roleName);
    const grants = await api('GET', `/api/v1/roles/${role.id}/grants`, { token: await admin.token() });
    expect(grants.body.grants).toEqual([{ resource_type: 'bot', resource_id: bot.id, permission: 'read' }]);
    await shot(adminPage, 'roles');
    await adminPage.context().close();
  });

  it('signs in with the keyboard alone, and names every control on each page', async () => {
    const kb = await newPage();
    await kb.goto(`${base}/console/`);
    await kb.getByLabel('Username').waitFor();
    // The check finds a control without a name (it is not vacuous), then none on the sign-in page.
    await kb.evaluate(
      `document.querySelector('form').append(Object.assign(document.createElement('input'), { id: 'probe' }))`,
    );
    expect((await unnamedControls(kb)).unnamed).toEqual(['<input id="probe">']);
    await kb.evaluate(`document.getElementById('probe').remove()`);
    await everyControlNamed(kb);
    const focused = () =>
      kb.evaluate(`document.activeElement?.getAttribute('name') ?? document.activeElement?.tagName`);
    await kb.keyboard.press('Tab');
    expect(await focused()).toBe('username');
    await kb.keyboard.type(admin.username);
    await kb.keyboard.press('Tab');
    expect(await focused()).toBe('password');
    await kb.keyboard.type(adminPassword);
    await kb.keyboard.press('Enter');
    await kb.getByRole('navigation', { name: 'Main' }).waitFor();
    await everyControlNamed(kb);
    const visits: [string, () => Promise<unknown>][] = [
      ['/sessions', () => kb.getByRole('button', { name: 'Apply filters' }).waitFor()],
      [`/sessions/${conversation.id}`, () => kb.locator('li.msg[data-seq="3"]').waitFor()],
      ['/usage', () => kb.getByRole('button', { name: 'Show' }).waitFor()],
      [`/usage/bots/${bot.id}`, () => kb.getByRole('heading', { name: 'Bot usage: helper-bot' }).waitFor()],
      ['/bots', () => kb.getByRole('button', { name: 'Create bot' }).waitFor()],
      ['/users', () => kb.getByRole('cell', { name: bob.username, exact: true }).waitFor()],
      ['/groups', () => kb.getByRole('button', { name: 'Create group' }).waitFor()],
      ['/roles', () => kb.getByRole('button', { name: 'Create role' }).waitFor()],
      ['/prices', () => kb.getByRole('button', { name: 'Save price' }).waitFor()],
      ['/search', () => kb.getByRole('button', { name: 'Search', exact: true }).waitFor()],
    ];
    for (const [path, loaded] of visits) {
      await kb.goto(`${base}/console${path}`);
      await loaded();
      await everyControlNamed(kb);
    }
    await kb.context().close();
  });

  it('renders hostile content as text and runs none of it', async () => {
    const payload = `<img src=x onerror="window.__pwned.push('img')"><script>window.__pwned.push('script')</script>`;
    const hostile = await createSession(alice, { title: `title ${payload}`, metadata: { note: payload } });
    await append(await alice.token(), hostile.id, {
      role: 'user',
      content: `content ${payload}`,
      media: [
        { type: 'image', url: "javascript:window.__pwned.push('href')", name: 'click <b>me</b>' },
        { type: 'image', url: 'JaVaScRiPt:window.__pwned.push(1)', name: 'upper' },
        { type: 'image', url: "data:text/html,<script>alert('x')</script>", name: 'data' },
      ],
    });
    await page.goto(`${base}/console/sessions`);
    const title = page.locator(`tr[data-session="${hostile.id}"] .title`);
    await title.waitFor();
    expect(await title.textContent()).toBe(`title ${payload}`);
    await title.click();
    await page.locator('li.msg[data-seq="1"]').waitFor();
    expect(await page.locator('.session-title').textContent()).toBe(`title ${payload}`);
    expect(await page.locator('li.msg[data-seq="1"] .content').textContent()).toBe(`content ${payload}`);
    expect(await page.locator('li.msg[data-seq="1"] .unsafe-link').count()).toBe(3);
    // Nothing was parsed as markup: no image, no script element from the content, no unsafe link.
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.locator('body script').count()).toBe(0);
    const hrefs = await page
      .locator('a[href]')
      .evaluateAll((as) => as.map((a) => String((a as unknown as { href: string }).href)));
    expect(hrefs.filter((h) => !/^https?:/i.test(h))).toEqual([]);
    await page.waitForTimeout(500);
    await noScriptRan(page);
    await shot(page, 'hostile-content');
  });

  it('keeps a conversation live for a minute while 20-second tokens expire', async () => {
    await page.goto(`${base}/console/sessions/${conversation.id}`);
    await page.locator('li.msg[data-seq="3"]').waitFor();
    await page.locator('[data-field="live"]').filter({ hasText: 'live' }).waitFor();
    const until = Date.now() + 60_000;
    let seq = 3;
    let sent = 0;
    while (Date.now() < until) {
      await page.waitForTimeout(7_000);
      const m = await append({ key: bot.api_key }, conversation.id, { role: 'assistant', content: `tick ${++sent}` });
      seq = m.seq;
      await page.locator(`li.msg[data-seq="${seq}"]`).waitFor({ timeout: 10_000 });
    }
    expect(sent).toBeGreaterThanOrEqual(7);
    // Every message once, in order, none missing after the reconnects.
    const seqs = await page.locator('li.msg').evaluateAll((ls) => ls.map((l) => Number(l.getAttribute('data-seq'))));
    expect(seqs).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    const refreshes = requests.filter((r) => r.url.endsWith('/api/v1/auth/refresh')).length;
    expect(refreshes).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it('signs out: the tokens are gone and the console calls the API no more', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    const after = requests.length;
    await page.waitForTimeout(3_000);
    expect(requests.slice(after).filter((r) => r.url.includes('/api/'))).toEqual([]);
    // The refresh token was revoked as well as dropped.
    await page.reload();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(requests.slice(after).filter((r) => r.url.includes('/api/'))).toEqual([]);
    await noScriptRan(page);
  });

  it('made every request to a route of /openapi.json (or its own files under /console)', async () => {
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, object> };
    const routes = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => ({
        method: method.toUpperCase(),
        pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]+')}$`),
      })),
    );
    const strays = requests.filter(({ method, url }) => {
      const parsed = new URL(url);
      if (parsed.protocol === 'blob:' || parsed.protocol === 'data:') return false;
      if (parsed.origin !== base) return true;
      if (method === 'GET' && (parsed.pathname === '/console' || parsed.pathname.startsWith('/console/'))) return false;
      return !routes.some((r) => r.method === method && r.pattern.test(parsed.pathname));
    });
    expect(strays).toEqual([]);
    expect(requests.filter((r) => r.url.includes('/api/v1/')).length).toBeGreaterThan(20);
    expect(pageErrors).toEqual([]);
  });
});
