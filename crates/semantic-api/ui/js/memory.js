// Memory: the agents of this key's namespace (GET /v1/agents) as a table with a filter, tier
// choice and sortable columns, refreshed live; pin/unpin, evict to disk and delete per agent; a
// totals bar from the list (used against the server's budgets) and from /metrics (KV usage).
// Export has no HTTP route: the offline CLI does it (`semantic agents export ID FILE`), which the
// page says.

import {api, text} from './api.js';
import {h, fill, field, select, fmtInt, fmtBytes, fmtAgo, errorBox} from './dom.js';
import {parseProm, sample} from './chart.js';

const COLUMNS = [
  ['id', 'Agent'], ['tier', 'Tier'], ['tokens', 'Tokens'], ['bytes', 'Bytes'], ['file_bytes', 'File'],
  ['last_used', 'Last used'], ['pinned', 'Pinned'], ['kv_type', 'KV type'],
];

export function mount(root) {
  let agents = [];
  let sort = {key: 'last_used', dir: -1};
  let timer = null;
  const totals = h('div', {class: 'totals', role: 'status', 'aria-live': 'polite'});
  const filter = h('input', {type: 'search', placeholder: 'part of an id'});
  const tier = select([['', 'all'], ['hot', 'hot'], ['warm', 'warm'], ['cold', 'cold']], '');
  const live = h('input', {type: 'checkbox', checked: true});
  const refresh = h('button', {type: 'button'}, 'Refresh');
  const status = h('div', {class: 'status-line'});
  const head = h('tr');
  const body = h('tbody');
  const table = h('table', {class: 'agents'}, h('caption', {class: 'sr-only'}, 'Agents of this API key'), h('thead', {}, head), body);
  root.append(totals,
    h('div', {class: 'toolbar'}, field('Filter', filter)[0], field('Tier', tier)[0],
      h('div', {class: 'field check'}, h('label', {}, live, ' Live refresh (2 s)')), refresh),
    status, h('div', {class: 'table-wrap'}, table),
    h('p', {class: 'muted small'}, 'Export: stop the server and run ', h('code', {}, 'semantic agents export ID FILE'),
      ' (there is no HTTP route for it). Evict writes the agent to disk and frees its engine slot; delete removes it from every tier.'));

  function header() {
    fill(head, ...COLUMNS.map(([key, label]) => {
      const sorted = sort.key === key;
      return h('th', {scope: 'col', 'aria-sort': sorted ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none'},
        h('button', {type: 'button', class: 'sort', onclick: () => {
          sort = {key, dir: sorted ? -sort.dir : key === 'id' || key === 'tier' ? 1 : -1};
          header();
          render();
        }}, label, sorted ? (sort.dir > 0 ? ' ▲' : ' ▼') : ''));
    }), h('th', {scope: 'col'}, 'Actions'));
  }

  function render() {
    const q = filter.value.trim().toLowerCase();
    const rows = agents
      .filter((a) => (!q || a.id.toLowerCase().includes(q)) && (!tier.value || a.tier === tier.value))
      .sort((a, b) => {
        const x = a[sort.key] ?? -1;
        const y = b[sort.key] ?? -1;
        return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
      });
    fill(body, ...rows.map(row));
    if (!rows.length) body.append(h('tr', {}, h('td', {colspan: COLUMNS.length + 1, class: 'muted'}, agents.length ? 'No agent matches.' : 'No agents yet: chat on the Chat page and they appear here.')));
  }

  function row(a) {
    const act = (label, path, method, confirmText) => h('button', {type: 'button', class: 'small', 'aria-label': `${label} ${a.id}`, onclick: async () => {
      if (confirmText && !confirm(confirmText)) return;
      try {
        await api(path, {method});
        status.replaceChildren(h('span', {class: 'ok'}, `${label}: ${a.id}`));
      } catch (e) {
        status.replaceChildren(errorBox(e));
      }
      load();
    }}, label);
    const base = `/v1/agents/${encodeURIComponent(a.id)}`;
    return h('tr', {'data-agent': a.id},
      h('th', {scope: 'row'}, h('code', {}, a.id)),
      h('td', {}, h('span', {class: `badge ${a.tier}`}, a.tier)),
      h('td', {class: 'num'}, fmtInt(a.tokens)),
      h('td', {class: 'num'}, fmtBytes(a.bytes)),
      h('td', {class: 'num'}, a.file_bytes ? fmtBytes(a.file_bytes) : '–'),
      h('td', {}, fmtAgo(a.last_used)),
      h('td', {}, a.pinned ? 'yes' : 'no'),
      h('td', {}, a.kv_type || '–'),
      h('td', {class: 'actions'},
        a.pinned ? act('Unpin', `${base}/unpin`, 'POST') : act('Pin', `${base}/pin`, 'POST'),
        a.tier !== 'cold' ? act('Evict', `${base}/evict`, 'POST') : null,
        act('Delete', base, 'DELETE', `Delete agent ${a.id} from every tier?`)));
  }

  async function load() {
    try {
      const list = await api('/v1/agents');
      agents = list.data || [];
      render();
      let kv = null;
      try {
        kv = sample(parseProm(await text('/metrics')), 'semantic_kv_usage_ratio');
      } catch {
        // metrics may need a key the caller lacks; the totals from the list still show
      }
      const by = (t) => agents.filter((a) => a.tier === t);
      const sum = (list, k) => list.reduce((s, a) => s + (a[k] || 0), 0);
      const b = list.budgets || {};
      const of = (v) => (v ? ` of ${v}` : '');
      const share = (used, budget) => (budget ? used / budget : undefined);
      const warmBytes = sum(by('warm'), 'bytes');
      const fileBytes = sum(agents, 'file_bytes');
      fill(totals,
        stat('Agents', fmtInt(agents.length)),
        stat('Hot (engine)', `${by('hot').length}${of(b.hot_agents)} · ${fmtInt(sum(by('hot'), 'tokens'))} cells`,
          share(by('hot').length, b.hot_agents)),
        stat('Warm (RAM)', `${by('warm').length} · ${fmtBytes(warmBytes)}${of(b.warm_bytes && fmtBytes(b.warm_bytes))}`,
          share(warmBytes, b.warm_bytes)),
        stat('Cold (disk)', `${agents.filter((a) => a.file_bytes).length} files · ${fmtBytes(fileBytes)}${of(b.disk_bytes && fmtBytes(b.disk_bytes))}`,
          share(fileBytes, b.disk_bytes)),
        kv === null ? null : stat('KV in use', `${(kv * 100).toFixed(1)} %`, kv));
      if (status.querySelector('.error')) status.replaceChildren();
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  }

  header();
  filter.addEventListener('input', render);
  tier.addEventListener('change', render);
  refresh.addEventListener('click', load);
  const tick = () => {
    clearInterval(timer);
    timer = live.checked ? setInterval(load, 2000) : null;
  };
  live.addEventListener('change', tick);
  return {
    show: () => {
      load();
      tick();
    },
    hide: () => clearInterval(timer),
  };
}

function stat(label, value, ratio) {
  const el = h('div', {class: 'stat'}, h('span', {class: 'muted small'}, label), h('strong', {}, value));
  if (ratio !== undefined) {
    const bar = h('div', {class: 'bar', role: 'img', 'aria-label': `${Math.round(ratio * 100)} percent`}, h('span'));
    bar.firstChild.style.width = `${Math.min(100, ratio * 100)}%`;
    el.append(bar);
  }
  return el;
}
