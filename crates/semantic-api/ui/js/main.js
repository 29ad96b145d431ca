// The page shell: client-side routing by path (/ui/chat, /ui/memory, …; /ui/ opens chat), the key
// form, the banner for errors and the server state in the header. Each page module exports
// mount(root) and returns {show, hide}; a page is built on its first visit and kept, so a chat or
// a run goes on while another page is open.

import {api, keys, onApiError} from './api.js';
import {h} from './dom.js';
import * as chat from './chat.js';
import * as memory from './memory.js';
import * as sessions from './sessions.js';
import * as scenarios from './scenarios.js';
import * as server from './server.js';

const PAGES = {chat, memory, sessions, scenarios, server};
const TITLES = {chat: 'Chat', memory: 'Memory', sessions: 'Sessions', scenarios: 'Scenarios', server: 'Server'};
const mounted = {};
let current = null;

const main = document.getElementById('main');
const banner = document.getElementById('banner');

export function showBanner(message) {
  banner.replaceChildren(h('span', {}, message), h('button', {class: 'link', onclick: () => (banner.hidden = true), 'aria-label': 'Dismiss'}, '×'));
  banner.hidden = false;
}

function pageOf(pathname) {
  const name = pathname.replace(/^\/ui\/?/, '').replace(/\/$/, '');
  return name === '' ? 'chat' : name in PAGES ? name : null;
}

function show(name, focus) {
  if (current && mounted[current]) {
    mounted[current].el.hidden = true;
    mounted[current].hooks.hide?.();
  }
  current = name;
  if (!name) {
    main.replaceChildren(h('section', {class: 'page'}, h('h1', {}, 'No such page'), h('p', {}, 'Pick one above.')));
    return;
  }
  document.getElementById('booting')?.remove();
  main.querySelector(':scope > section.page:not([data-page])')?.remove();
  if (!mounted[name]) {
    const el = h('section', {class: 'page', 'data-page': name, 'aria-labelledby': `title-${name}`});
    el.append(h('h1', {id: `title-${name}`}, TITLES[name]));
    main.append(el);
    let hooks = {};
    try {
      hooks = PAGES[name].mount(el) || {};
    } catch (e) {
      el.append(h('p', {class: 'error', role: 'alert'}, `This page failed to start: ${e.message}`));
    }
    mounted[name] = {el, hooks};
  }
  mounted[name].el.hidden = false;
  mounted[name].hooks.show?.();
  document.title = `${TITLES[name]} · semantic`;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (focus) main.focus();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href^="/ui/"]');
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  const name = pageOf(new URL(a.href).pathname);
  if (!name) return;
  e.preventDefault();
  history.pushState({}, '', a.href);
  show(name, true);
});
window.addEventListener('popstate', () => show(pageOf(location.pathname), true));

// Keys.
const form = document.getElementById('keys-form');
const apiInput = document.getElementById('api-key');
const adminInput = document.getElementById('admin-key');
apiInput.value = keys.api;
adminInput.value = keys.admin;
form.addEventListener('submit', (e) => {
  e.preventDefault();
  keys.set(apiInput.value.trim(), adminInput.value.trim());
  document.getElementById('keys').open = false;
  banner.hidden = true;
  checkServer();
  if (current) mounted[current]?.hooks.show?.();
});
onApiError((err) => {
  if (err.status === 401) {
    showBanner(`${err.message}. Enter a key under “Keys”.`);
    document.getElementById('keys').open = true;
  }
});

// The header's server state: model and load, every 5 s.
const state = document.getElementById('server-state');
async function checkServer() {
  try {
    const health = await api('/health');
    state.textContent = `${health.model} · ${health.running} running · ${health.queued} queued`;
    state.className = 'muted';
  } catch (e) {
    state.textContent = e.status === 503 ? 'model loading…' : 'server unreachable';
    state.className = 'warn';
  }
}
checkServer();
setInterval(checkServer, 5000);

window.addEventListener('unhandledrejection', (e) => showBanner(String(e.reason?.message || e.reason)));
window.addEventListener('error', (e) => showBanner(`Page error: ${e.message}`));

show(pageOf(location.pathname), false);
