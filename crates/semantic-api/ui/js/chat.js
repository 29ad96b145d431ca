// Chat: 1–8 agent columns side by side. Each column is one agent (its id, system prompt and
// sampling), keeps its conversation and resends all of it every turn — that is how agent memory
// works: the same agent id with the same prefix reuses the stored KV. Per turn the column shows
// where the server says the reused KV came from (prompt_tokens_details.cache_source), cached
// against new prompt tokens, and TTFT and tokens/s measured here.

import {api, sse} from './api.js';
import {h, fill, field, select, fmtInt, fmtMs} from './dom.js';

const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'];
const PROMPTS = [
  'You are Alice, a cheerful travel guide. Answer in two sentences.',
  'You are Bob, a terse engineer. Answer in one sentence.',
];
const BADGES = {
  hot: ['hot', 'reused from the agent’s live KV in the engine'],
  warm: ['warm', 'restored from the agent’s KV state in RAM'],
  disk: ['disk', 'restored from the agent’s file on disk'],
  shared_prefix: ['shared', 'a prefix copied from another agent’s live KV'],
};

let model = null;

export function mount(root) {
  const columns = [];
  const grid = h('div', {class: 'columns'});
  const count = select([1, 2, 3, 4, 5, 6, 7, 8].map((n) => [String(n), String(n)]), '2');
  const message = h('textarea', {rows: 2, placeholder: 'A message for every column'});
  const sendAll = h('button', {type: 'submit', class: 'primary'}, 'Send to all');
  const all = h('form', {class: 'toolbar', 'aria-label': 'Send to all columns'},
    field('Agents', count)[0], h('div', {class: 'field grow'}, h('label', {for: (message.id = 'chat-all')}, 'Message to all'), message), sendAll);
  root.append(h('p', {class: 'muted'}, 'Each column is an agent. Its conversation is sent again every turn; the server reuses what it remembers of it. The badge says where the reused part came from: ',
    h('span', {class: 'badge cold'}, 'cold'), ' nothing, ', h('span', {class: 'badge hot'}, 'hot'), ' engine, ',
    h('span', {class: 'badge warm'}, 'warm'), ' RAM, ', h('span', {class: 'badge disk'}, 'disk'), ' file.'), all, grid);

  function resize() {
    const n = Number(count.value);
    while (columns.length < n) {
      const c = column(columns.length);
      columns.push(c);
      grid.append(c.el);
    }
    while (columns.length > n) columns.pop().el.remove();
    grid.style.setProperty('--cols', String(n));
  }
  count.addEventListener('change', resize);
  resize();
  all.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = message.value.trim();
    if (!text) return;
    message.value = '';
    for (const c of columns) c.send(text);
  });
  message.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      all.requestSubmit();
    }
  });
  return {
    show: () => {
      if (!model) api('/v1/models').then((m) => (model = m.data?.[0]?.id || null)).catch(() => {});
    },
  };
}

function column(i) {
  const agent = h('input', {value: NAMES[i], spellcheck: false, autocomplete: 'off'});
  const system = h('textarea', {rows: 2, value: PROMPTS[i] || `You are ${NAMES[i]}. Answer briefly.`});
  const temperature = h('input', {type: 'number', min: 0, max: 2, step: 0.1, value: '0.3'});
  const maxTokens = h('input', {type: 'number', min: 1, max: 4096, step: 1, value: '64'});
  const log = h('ol', {class: 'log', 'aria-live': 'polite', 'aria-label': `Conversation of column ${i + 1}`});
  const input = h('textarea', {rows: 2, placeholder: 'Message this agent'});
  const send = h('button', {type: 'submit'}, 'Send');
  const reset = h('button', {type: 'button', class: 'link', title: 'Start a new conversation (the server keeps the agent’s memory)'}, 'New conversation');
  const el = h('article', {class: 'column card', 'data-column': i},
    h('header', {class: 'column-head'}, field('Agent id', agent)[0], reset),
    h('details', {class: 'settings'}, h('summary', {}, 'System prompt and sampling'),
      field('System prompt', system)[0],
      h('div', {class: 'row'}, field('Temperature', temperature)[0], field('Max tokens', maxTokens)[0])),
    log,
    h('form', {class: 'composer', 'aria-label': `Message column ${i + 1}`},
      h('label', {for: (input.id = `chat-${i}-input`), class: 'sr-only'}, `Message for column ${i + 1}`), input, send));
  const history = [];
  let busy = false;

  reset.addEventListener('click', () => {
    history.length = 0;
    log.replaceChildren();
  });
  el.querySelector('form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    sendTurn(text);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      el.querySelector('form').requestSubmit();
    }
  });

  async function sendTurn(text) {
    if (busy) return;
    busy = true;
    send.disabled = true;
    history.push({role: 'user', content: text});
    log.append(h('li', {class: 'msg user'}, text));
    const answer = h('div', {class: 'answer'});
    const stats = h('div', {class: 'stats muted small'}, h('span', {class: 'badge pending'}, '…'), ' waiting');
    const item = h('li', {class: 'msg assistant', 'aria-busy': 'true'}, answer, stats);
    log.append(item);
    const messages = [];
    if (system.value.trim()) messages.push({role: 'system', content: system.value.trim()});
    messages.push(...history);
    const body = {
      messages,
      stream: true,
      stream_options: {include_usage: true},
      agent_id: agent.value.trim() || undefined,
      temperature: Number(temperature.value),
      max_tokens: Number(maxTokens.value),
    };
    if (model) body.model = model;
    const started = performance.now();
    let first = null;
    let usage = null;
    let reply = '';
    try {
      await sse('/v1/chat/completions', {body}, (_name, data) => {
        if (data === '[DONE]' || typeof data !== 'object') return;
        if (data.error) throw new Error(data.error.message || 'stream error');
        const delta = data.choices?.[0]?.delta?.content;
        if (delta) {
          if (first === null) first = performance.now();
          reply += delta;
          answer.textContent = reply;
          log.scrollTop = log.scrollHeight;
        }
        if (data.usage) usage = data.usage;
      });
      history.push({role: 'assistant', content: reply});
      fill(stats, ...turnStats(usage, started, first, performance.now()));
      item.dataset.source = usage?.prompt_tokens_details?.cache_source || 'cold';
    } catch (e) {
      history.pop();
      fill(stats, h('span', {class: 'error'}, e.message));
      item.classList.add('failed');
    } finally {
      item.setAttribute('aria-busy', 'false');
      busy = false;
      send.disabled = false;
    }
  }

  return {el, send: sendTurn};
}

function turnStats(usage, started, first, ended) {
  const details = usage?.prompt_tokens_details || {};
  const cached = details.cached_tokens || 0;
  const [label, title] = BADGES[details.cache_source] || ['cold', 'nothing reused: the whole prompt was computed'];
  const prompt = usage?.prompt_tokens ?? 0;
  const completion = usage?.completion_tokens ?? 0;
  const decode = first === null ? null : (ended - first) / 1000;
  const rate = decode && completion > 1 ? ((completion - 1) / decode).toFixed(1) : '–';
  return [
    h('span', {class: `badge ${label}`, title}, label),
    h('span', {title: 'prompt tokens whose KV was reused / computed now'}, ` ${fmtInt(cached)} cached · ${fmtInt(prompt - cached)} new`),
    h('span', {title: 'time to first token, measured in this page'}, ` · TTFT ${fmtMs(first === null ? null : first - started)}`),
    h('span', {title: 'generated tokens per second after the first'}, ` · ${rate} tok/s`),
  ];
}
