import { reactive } from 'vue';

/** A small history router under /console: the gateway answers index.html for every /console/* path. */
export const BASE = '/console';

export const route = reactive({ path: '/', query: new URLSearchParams() });

function read(): void {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname;
  route.path = path === '' ? '/' : path;
  route.query = new URLSearchParams(location.search);
}

export function href(path: string): string {
  return `${BASE}${path}`;
}

export function navigate(path: string, replace = false): void {
  const target = href(path);
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  read();
  window.scrollTo(0, 0);
}

/** A plain left click on an in-console link navigates without a reload; others behave as links. */
export function follow(event: MouseEvent, path: string): void {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(path);
}

window.addEventListener('popstate', read);
read();
