// Scenarios: pick a shipped scenario (compiled into the binary, /ui/assets/scenarios/) or upload a
// YAML file, edit it, validate it (/v1/scenarios/validate, issues with their lines), run it
// (/v1/scenarios/runs), all phases in a row or one phase at a time (a step run paused between
// phases, continued with …/next), and follow its events (SSE) as a live transcript; when it ends, the parsed
// outcome, the payoff matrix with the cell reached, what memory saved, and an interaction graph
// (inline SVG) of who spoke to whom.

import {api, sse, text} from './api.js';
import {h, fill, field, select, fmtInt, errorBox} from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';

export function mount(root) {
  const pick = h('select');
  const upload = h('input', {type: 'file', accept: '.yaml,.yml,text/yaml'});
  const yaml = h('textarea', {rows: 10, spellcheck: false, class: 'code'});
  const rounds = h('input', {type: 'number', min: 1, max: 20, value: '1'});
  const maxTokens = h('input', {type: 'number', min: 1, max: 2048, value: '48'});
  const validate = h('button', {type: 'button'}, 'Validate');
  const run = h('button', {type: 'button', class: 'primary'}, 'Run all phases');
  const step = h('button', {type: 'button'}, 'Run next phase');
  const status = h('div', {class: 'status-line', role: 'status'});
  const issues = h('div');
  const live = h('ol', {class: 'timeline', 'aria-live': 'polite', 'aria-label': 'Run transcript'});
  const result = h('div', {class: 'scenario-result'});
  root.append(
    h('div', {class: 'toolbar'}, field('Shipped scenario', pick)[0], field('Or upload a YAML file', upload)[0]),
    h('div', {class: 'field'}, h('label', {for: (yaml.id = 'scenario-yaml')}, 'Scenario (YAML)'), yaml),
    h('div', {class: 'toolbar'}, field('Rounds per phase', rounds)[0], field('Max tokens per turn', maxTokens)[0], validate, run, step),
    status, issues,
    h('div', {class: 'split'}, h('section', {'aria-label': 'Transcript'}, h('h2', {}, 'Transcript'), live),
      h('section', {'aria-label': 'Result'}, h('h2', {}, 'Outcome'), result)));

  async function load(name) {
    try {
      yaml.value = await text(`/ui/assets/scenarios/${encodeURIComponent(name)}.yaml`);
      issues.replaceChildren();
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  }
  pick.addEventListener('change', () => load(pick.value));
  upload.addEventListener('change', async () => {
    const f = upload.files?.[0];
    if (f) yaml.value = await f.text();
  });

  async function check() {
    const v = await api('/v1/scenarios/validate', {body: {yaml: yaml.value}});
    if (v.valid) {
      fill(issues, h('p', {class: 'ok'}, `Valid: “${v.scenario.title || v.scenario.id}”, ${Object.keys(v.scenario.agents || {}).length} agents, ${v.scenario.phases.length} phases.`));
    } else {
      fill(issues, h('p', {class: 'error'}, 'The scenario has problems:'),
        h('ul', {class: 'error'}, ...v.issues.map((i) => h('li', {}, `line ${i.line ?? '?'}, ${i.path || '(top)'}: ${i.message}`))));
    }
    return v;
  }
  validate.addEventListener('click', () => check().catch((e) => status.replaceChildren(errorBox(e))));

  // A step run (`step: true`) pauses after each phase; `paused` is its id until it completes.
  let paused = null;
  const turns = new Map();

  function onEvent(name, d) {
    if (name === 'phase_start') live.append(h('li', {class: 'phase'}, h('h3', {}, `Phase ${d.label || d.phase}`)));
    else if (name === 'turn_start') {
      const item = h('li', {class: 'msg turn', 'aria-busy': 'true'}, h('div', {class: 'who'}, `${d.agent_name} · turn ${d.turn}`), h('div', {class: 'content muted'}, '…'));
      turns.set(`${d.phase}/${d.turn}`, item);
      live.append(item);
    } else if (name === 'turn_complete') {
      const item = turns.get(`${d.phase}/${d.turn}`);
      if (item) {
        item.querySelector('.content').textContent = d.content;
        item.querySelector('.content').classList.remove('muted');
        item.setAttribute('aria-busy', 'false');
        const u = d.usage || {};
        item.append(h('div', {class: 'muted small'}, `${fmtInt(u.prompt_tokens_details?.cached_tokens)} of ${fmtInt(u.prompt_tokens)} prompt tokens from memory`));
      }
    } else if (name === 'decision') live.append(h('li', {class: 'decision'}, `Decision in ${d.phase}: ${d.decision?.outcome || d.decision?.status || '–'}`));
  }

  // Follows a run's events until it ends or pauses (the stream replays what this page already
  // showed, so only events after `seen` are drawn), then shows its transcript and status.
  async function follow(runId, seen) {
    let failure = null;
    let n = 0;
    await sse(`/v1/scenarios/runs/${encodeURIComponent(runId)}/events`, {}, (name, d) => {
      n += 1;
      if (n <= seen) return;
      if (name === 'error') failure = d.error?.message || 'the run failed';
      else onEvent(name, d);
    });
    const t = await api(`/v1/scenarios/runs/${encodeURIComponent(runId)}/transcript`);
    renderResult(result, t);
    paused = t.status === 'paused' ? {id: runId, seen: n} : null;
    const done = (t.phases || []).length;
    const total = t.phases_total ?? done;
    const words = t.status === 'paused' ? `paused after phase ${done} of ${total}; “Run next phase” continues` : t.status;
    status.replaceChildren(failure ? errorBox(failure) : h('span', {class: 'ok', 'data-run-status': t.status}, `Run ${runId}: ${words}.`));
  }

  async function start(stepwise) {
    live.replaceChildren();
    result.replaceChildren();
    turns.clear();
    const v = await check();
    if (!v.valid) return;
    const body = {yaml: yaml.value, rounds: Number(rounds.value), max_tokens: Number(maxTokens.value), step: stepwise};
    const r = await api('/v1/scenarios/runs', {body});
    status.replaceChildren(h('span', {class: 'muted'}, `Running ${r.run_id}…`));
    await follow(r.run_id, 0);
  }

  async function busy(f) {
    run.disabled = true;
    step.disabled = true;
    try {
      await f();
    } catch (e) {
      status.replaceChildren(errorBox(e));
    } finally {
      run.disabled = false;
      step.disabled = false;
    }
  }

  run.addEventListener('click', () => busy(() => start(false)));
  step.addEventListener('click', () => busy(async () => {
    if (!paused) return start(true);
    const {id, seen} = paused;
    await api(`/v1/scenarios/runs/${encodeURIComponent(id)}/next`, {method: 'POST', body: {}});
    status.replaceChildren(h('span', {class: 'muted'}, `Running the next phase of ${id}…`));
    await follow(id, seen);
  }));

  let started = false;
  return {
    show: async () => {
      if (started) return;
      started = true;
      try {
        const names = await api('/ui/assets/scenarios.json');
        fill(pick, ...names.map((n) => h('option', {value: n, selected: n === 'tiny'}, n)));
        await load(pick.value);
      } catch (e) {
        status.replaceChildren(errorBox(e));
      }
    },
  };
}

function renderResult(root, t) {
  const parts = [];
  const o = t.outcome;
  if (o) {
    parts.push(h('table', {class: 'small'}, h('caption', {}, `Choices (${o.type})`),
      h('tbody', {}, ...Object.entries(o.choices).map(([a, c]) => h('tr', {}, h('th', {scope: 'row'}, a), h('td', {}, c ?? 'no choice found'))))));
  } else {
    parts.push(h('p', {class: 'muted'}, 'This scenario declares no outcome to parse.'));
  }
  if (t.payoff) parts.push(payoff(t.payoff, o?.payoff, o?.choices || {}));
  const m = t.memory;
  if (m) {
    parts.push(h('p', {}, `Prompt tokens: ${fmtInt(m.naive_prefill_tokens)}, of which ${fmtInt(m.cached_tokens)} came from agent memory; ${fmtInt(m.prefilled_tokens)} were computed.`));
  }
  parts.push(h('h3', {}, 'Who spoke to whom'), graph(t));
  fill(root, ...parts);
}

function payoff(p, reached, choices) {
  const labels = p.labels;
  const at = (agent) => labels.findIndex((l) => l.toLowerCase() === String(choices[agent] ?? '').toLowerCase());
  const [ri, ci] = reached ? [at(reached.row), at(reached.column)] : [-1, -1];
  return h('table', {class: 'payoff'},
    h('caption', {}, reached ? `Payoff: ${reached.row} (rows) × ${reached.column} (columns)` : 'Payoff matrix'),
    h('thead', {}, h('tr', {}, h('td'), ...labels.map((l) => h('th', {scope: 'col'}, l)))),
    h('tbody', {}, ...labels.map((row, i) => h('tr', {}, h('th', {scope: 'row'}, row),
      ...labels.map((_col, j) => h('td', {class: i === ri && j === ci ? 'hit' : ''}, p.matrix[i][j]))))));
}

/** Edges from every message: public ones reach everyone else in the phase, whispers their viewers. */
function graph(t) {
  const nodes = new Set();
  const edges = new Map();
  for (const phase of t.phases || []) {
    const inPhase = new Set((phase.turns || []).map((x) => x.agent_id));
    for (const m of phase.messages || []) if (m.sender_id) inPhase.add(m.sender_id);
    for (const a of inPhase) nodes.add(a);
    for (const m of phase.messages || []) {
      if (!m.sender_id) continue;
      const to = m.visible_to ? m.visible_to.filter((x) => x !== m.sender_id) : [...inPhase].filter((x) => x !== m.sender_id);
      for (const r of to) edges.set(`${m.sender_id}>${r}`, (edges.get(`${m.sender_id}>${r}`) || 0) + 1);
    }
  }
  const list = [...nodes];
  const w = 320;
  const c = w / 2;
  const rad = list.length > 1 ? 110 : 0;
  const pos = Object.fromEntries(list.map((n, i) => [n, [c + rad * Math.cos((2 * Math.PI * i) / list.length - Math.PI / 2), c + rad * Math.sin((2 * Math.PI * i) / list.length - Math.PI / 2)]]));
  const svg = document.createElementNS(SVG, 'svg');
  const el = (tag, attrs, txt) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (txt !== undefined) e.textContent = txt;
    return e;
  };
  svg.setAttribute('viewBox', `0 0 ${w} ${w}`);
  svg.setAttribute('class', 'graph');
  svg.setAttribute('role', 'img');
  const desc = [...edges].map(([k, n]) => `${k.replace('>', ' to ')}: ${n}`).join('; ');
  svg.append(el('title', {}, `Messages between agents: ${desc || 'none'}`));
  const defs = el('defs', {});
  const marker = el('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 26, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse'});
  marker.append(el('path', {d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow'}));
  defs.append(marker);
  svg.append(defs);
  for (const [k, n] of edges) {
    const [a, b] = k.split('>');
    const [x1, y1] = pos[a];
    const [x2, y2] = pos[b];
    // Offset each direction a little so a→b and b→a do not overlap.
    const dx = y2 - y1;
    const dy = x1 - x2;
    const len = Math.hypot(dx, dy) || 1;
    const o = 4;
    const line = el('line', {x1: x1 + (dx / len) * o, y1: y1 + (dy / len) * o, x2: x2 + (dx / len) * o, y2: y2 + (dy / len) * o,
      class: 'edge', 'stroke-width': Math.min(6, 1 + n), 'marker-end': 'url(#arrow)'});
    line.append(el('title', {}, `${a} → ${b}: ${n} messages`));
    svg.append(line);
  }
  for (const n of list) {
    const [x, y] = pos[n];
    svg.append(el('circle', {cx: x, cy: y, r: 18, class: 'node'}), el('text', {x, y: y + 4, class: 'node-label', 'text-anchor': 'middle'}, n.slice(0, 8)));
  }
  return svg;
}
