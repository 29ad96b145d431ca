// Server: health probes, model facts (/v1/models, its `details` where the server gives them, and
// /admin/status with the admin key), queue
// and running counts, and live charts computed here from /metrics every 2 s (TTFT per interval
// from the histogram's sum and count, generated tokens/s, reused prompt tokens by source). With
// the admin key: flush agent memory to disk, delete every agent, swap the model.

import {api, text, keys} from './api.js';
import {h, fill, fmtInt, fmtBytes, errorBox} from './dom.js';
import {parseProm, sample, byLabel, lineChart} from './chart.js';

const KEEP = 60;

export function mount(root) {
  const health = h('div', {class: 'grid3'});
  const facts = h('div', {class: 'card'});
  const charts = h('div', {class: 'charts'});
  const admin = h('div', {class: 'card'});
  const errors = h('div');
  root.append(errors, h('h2', {}, 'Health'), health, h('h2', {}, 'Model'), facts,
    h('h2', {}, 'Live (from /metrics, every 2 s)'), charts, h('h2', {}, 'Admin'), admin);
  const history = {ttft: [], tps: [], hot: [], warm: [], disk: [], queued: [], running: []};
  let last = null;
  let timer = null;

  async function probes() {
    const rows = [];
    for (const path of ['/health/live', '/health/startup', '/health/ready']) {
      try {
        const body = await api(path);
        rows.push(card(path, body.status || 'ok', 'ok'));
      } catch (e) {
        rows.push(card(path, e.message, 'warn'));
      }
    }
    try {
      const hl = await api('/health');
      rows.push(card('running / queued', `${hl.running} / ${hl.queued}`, 'ok'));
      rows.push(card('KV cells reserved', `${fmtInt(hl.kv_reserved)} of ${fmtInt(hl.kv_capacity)}`, 'ok'));
    } catch (e) {
      rows.push(card('/health', e.message, 'warn'));
    }
    fill(health, ...rows);
  }

  async function model() {
    const items = [];
    try {
      const m = await api('/v1/models');
      for (const d of m.data || []) {
        items.push(['model', d.id + (d.loaded === false ? ' (not loaded)' : '')], ['owned by', d.owned_by]);
        for (const [k, v] of Object.entries(d.details || {})) items.push([k.replaceAll('_', ' '), typeof v === 'object' ? JSON.stringify(v) : v]);
      }
    } catch (e) {
      items.push(['/v1/models', e.message]);
    }
    if (keys.admin) {
      try {
        const s = await api('/admin/status', {admin: true});
        items.push(['fingerprint', s.fingerprint], ['uptime', `${fmtInt(s.uptime_seconds)} s`],
          ['engine steps', fmtInt(s.scheduler.steps)], ['queue capacity', fmtInt(s.scheduler.queue_capacity)],
          ['agents hot / warm / cold', `${s.agents.hot} / ${s.agents.warm} / ${s.agents.cold}`],
          ['warm RAM', fmtBytes(s.agents.warm_bytes)], ['agent files', fmtBytes(s.agents.disk_bytes)]);
      } catch (e) {
        items.push(['/admin/status', e.message]);
      }
    } else {
      items.push(['more', 'enter the admin key under “Keys” for the fingerprint, uptime and memory figures']);
    }
    fill(facts, h('dl', {class: 'facts'}, ...items.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v ?? '–'))])));
  }

  async function metrics() {
    try {
      const now = performance.now();
      const s = parseProm(await text('/metrics'));
      const cur = {
        t: now,
        ttftSum: sample(s, 'semantic_time_to_first_token_seconds_sum') || 0,
        ttftCount: sample(s, 'semantic_time_to_first_token_seconds_count') || 0,
        generated: sample(s, 'semantic_generated_tokens_total') || 0,
        reused: byLabel(s, 'semantic_reused_prompt_tokens_total', 'source'),
      };
      history.queued.push(sample(s, 'semantic_queue_depth') || 0);
      history.running.push(sample(s, 'semantic_running_sequences') || 0);
      if (last) {
        const dt = (cur.t - last.t) / 1000;
        const n = cur.ttftCount - last.ttftCount;
        history.ttft.push(n > 0 ? ((cur.ttftSum - last.ttftSum) / n) * 1000 : NaN);
        history.tps.push((cur.generated - last.generated) / dt);
        for (const src of ['hot', 'warm', 'disk']) history[src].push(((cur.reused[src] || 0) - (last.reused[src] || 0)) / dt);
      }
      last = cur;
      for (const k of Object.keys(history)) history[k].splice(0, Math.max(0, history[k].length - KEEP));
      fill(charts,
        figure('Time to first token (mean per interval)', lineChart('TTFT', [{label: 'TTFT', values: history.ttft}], ' ms')),
        figure('Generated tokens per second', lineChart('tokens/s', [{label: 'tok/s', values: history.tps}])),
        figure('Reused prompt tokens per second, by tier', lineChart('cache hits', [
          {label: 'hot', values: history.hot, cls: 'hot'}, {label: 'warm', values: history.warm, cls: 'warm'},
          {label: 'disk', values: history.disk, cls: 'disk'}])),
        figure('Queue and running', lineChart('queue', [{label: 'queued', values: history.queued}, {label: 'running', values: history.running}])));
      if (errors.firstChild) errors.replaceChildren();
    } catch (e) {
      fill(errors, errorBox(e));
    }
  }

  function adminPanel() {
    const out = h('p', {role: 'status'});
    const act = (label, path, method, warning) => h('button', {type: 'button', disabled: !keys.admin, onclick: async () => {
      if (warning && !confirm(warning)) return;
      try {
        out.replaceChildren(h('span', {class: 'ok'}, `${label}: ${JSON.stringify(await api(path, {method, admin: true}))}`));
      } catch (e) {
        out.replaceChildren(errorBox(e));
      }
    }}, label);
    fill(admin,
      h('p', {class: 'muted'}, keys.admin ? 'Operator actions for every namespace.' : 'Enter the admin key under “Keys” to enable these.'),
      h('div', {class: 'toolbar'}, act('Flush agent memory to disk', '/admin/flush', 'POST'),
        act('Delete every agent', '/admin/caches', 'DELETE', 'Delete every agent of every namespace?')),
      modelSwap(out),
      out);
  }

  // The models directory's servable GGUFs; swapping drains in-flight requests, persists every
  // agent and loads the chosen model (the previous one is reloaded if that fails).
  function modelSwap(out) {
    const select = h('select', {'aria-label': 'Model to serve', disabled: !keys.admin});
    const swap = h('button', {type: 'button', disabled: !keys.admin, onclick: async () => {
      const id = select.value;
      if (!id) return;
      swap.disabled = true;
      out.replaceChildren(h('span', {class: 'muted'}, `swapping to ${id}: draining, then loading…`));
      try {
        const r = await api('/admin/models/swap', {body: {model_id: id}, admin: true});
        const took = r.seconds === undefined ? '' : ` in ${r.seconds.toFixed(1)} s`;
        out.replaceChildren(h('span', {class: 'ok'}, `swap: ${r.status} (${r.model_id})${took}`));
        model();
      } catch (e) {
        out.replaceChildren(errorBox(e));
      } finally {
        swap.disabled = false;
      }
    }}, 'Swap model');
    if (keys.admin) {
      api('/admin/models/available', {admin: true}).then((r) => {
        const servable = (r.models || []).filter((m) => m.servable);
        select.replaceChildren(...servable.map((m) => h('option', {value: m.id, selected: m.loaded},
          `${m.id}${m.loaded ? ' (serving)' : ''} · ${m.architecture || '?'} · ${fmtBytes(m.size_bytes)}`)));
      }).catch((e) => out.replaceChildren(errorBox(e)));
    }
    return h('div', {class: 'toolbar'}, select, swap,
      h('span', {class: 'muted small'}, 'Requests get 503 + Retry-After while a swap runs.'));
  }

  // The charts keep sampling once the page was opened, so coming back shows what happened
  // meanwhile; the probes run only while the page is shown.
  let sampling = null;
  return {
    show: () => {
      probes();
      model();
      adminPanel();
      if (!sampling) {
        metrics();
        sampling = setInterval(metrics, 2000);
      }
      clearInterval(timer);
      timer = setInterval(probes, 2000);
    },
    hide: () => clearInterval(timer),
  };
}

function card(label, value, cls) {
  return h('div', {class: `stat ${cls}`}, h('span', {class: 'muted small'}, label), h('strong', {}, value));
}

function figure(caption, svg) {
  return h('figure', {class: 'card chart-card'}, svg, h('figcaption', {class: 'small'}, caption));
}
