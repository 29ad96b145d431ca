// Memory: the agents of this key's namespace (GET /v1/agents) as a table with a filter, tier
// choice and sortable columns, refreshed live; pin/unpin, evict to disk, export (a download of the
// agent's file) and delete per agent, and import of an exported file under an agent id; agents
// other models made are listed read-only with their model; a totals bar from the list (the serving
// model's agents against the server's budgets) and from /metrics (KV usage).

import {api, blob, text} from './api.js';
import {h, fill, field, select, fmtInt, fmtBytes, fmtAgo, errorBox} from './dom.js';
import {parseProm, sample} from './chart.js';

const COLUMNS = [
  ['id', 'Agent'], ['model', 'Model'], ['tier', 'Tier'], ['tokens', 'Tokens'], ['bytes', 'Bytes'],
  ['file_bytes', 'File'], ['last_used', 'Last used'], ['pinned', 'Pinned'], ['kv_type', 'KV type'],
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
  const importFile = h('input', {type: 'file', accept: '.skv,application/octet-stream'});
  const importId = h('input', {type: 'text', placeholder: 'agent id', pattern: '[A-Za-z0-9._-]{1,128}'});
  const replace = h('input', {type: 'checkbox'});
  const importButton = h('button', {type: 'button'}, 'Import');
  importFile.addEventListener('change', () => {
    const name = importFile.files[0]?.name.replace(/\.skv$/, '');
    if (name && !importId.value) importId.value = name;
  });
  importButton.addEventListener('click', async () => {
    const file = importFile.files[0];
    const id = importId.value.trim();
    if (!file || !id) {
      status.replaceChildren(h('span', {class: 'error'}, 'Choose an exported agent file and the agent id it becomes.'));
      return;
    }
    try {
      const path = `/v1/agents/${encodeURIComponent(id)}/import${replace.checked ? '?replace=true' : ''}`;
      const agent = await api(path, {method: 'PUT', raw: file});
      status.replaceChildren(h('span', {class: 'ok'}, `Imported ${agent.id}: ${fmtInt(agent.tokens)} tokens, ${agent.tier}`));
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
    load();
  });
  root.append(totals,
    h('div', {class: 'toolbar'}, field('Filter', filter)[0], field('Tier', tier)[0],
      h('div', {class: 'field check'}, h('label', {}, live, ' Live refresh (2 s)')), refresh),
    status, h('div', {class: 'table-wrap'}, table),
    h('div', {class: 'toolbar'}, field('Agent file', importFile)[0], field('Import as', importId)[0],
      h('div', {class: 'field check'}, h('label', {}, replace, ' Replace an agent of that id')), importButton),
    h('p', {class: 'muted small'}, 'Evict writes the agent to disk and frees its engine slot; export downloads its file ',
      '(what ', h('code', {}, 'semantic agents export'), ' writes), which imports here or with ', h('code', {}, 'semantic agents import'),
      ' into a server of the same model; delete removes it from every tier. Agents of other models are kept on disk ',
      'and come back when their model is loaded.'));

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
    const download = h('button', {type: 'button', class: 'small', 'aria-label': `Export ${a.id}`, onclick: async () => {
      try {
        const url = URL.createObjectURL(await blob(`${base}/export`));
        const link = h('a', {href: url, download: `${a.id}.skv`});
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60000);
        status.replaceChildren(h('span', {class: 'ok'}, `Exported ${a.id} (${a.id}.skv)`));
      } catch (e) {
        status.replaceChildren(errorBox(e));
      }
    }}, 'Export');
    const serving = a.model_loaded !== false;
    return h('tr', {'data-agent': a.id, 'data-model': a.model || ''},
      h('th', {scope: 'row'}, h('code', {}, a.id)),
      h('td', {}, a.model || '–'),
      h('td', {}, h('span', {class: `badge ${a.tier}`}, a.tier)),
      h('td', {class: 'num'}, fmtInt(a.tokens)),
      h('td', {class: 'num'}, fmtBytes(a.bytes)),
      h('td', {class: 'num'}, a.file_bytes ? fmtBytes(a.file_bytes) : '–'),
      h('td', {}, fmtAgo(a.last_used)),
      h('td', {}, a.pinned ? 'yes' : 'no'),
      h('td', {}, a.kv_type || '–'),
      serving ? h('td', {class: 'actions'},
        a.pinned ? act('Unpin', `${base}/unpin`, 'POST') : act('Pin', `${base}/pin`, 'POST'),
        a.tier !== 'cold' ? act('Evict', `${base}/evict`, 'POST') : null,
        download,
        act('Delete', base, 'DELETE', `Delete agent ${a.id} from every tier?`))
        : h('td', {class: 'muted small'}, `kept on disk for ${a.model}`));
  }

  async function load() {
    try {
      const list = await api('/v1/agents');
      agents = list.data || [];
      render();
      const mine = agents.filter((a) => a.model_loaded !== false);
      let kv = null;
      try {
        kv = sample(parseProm(await text('/metrics')), 'semantic_kv_usage_ratio');
      } catch {
        // metrics may need a key the caller lacks; the totals from the list still show
      }
      const by = (t) => mine.filter((a) => a.tier === t);
      const sum = (list, k) => list.reduce((s, a) => s + (a[k] || 0), 0);
      const b = list.budgets || {};
      const of = (v) => (v ? ` of ${v}` : '');
      const share = (used, budget) => (budget ? used / budget : undefined);
      const warmBytes = sum(by('warm'), 'bytes');
      const fileBytes = sum(mine, 'file_bytes');
      const others = agents.length - mine.length;
      fill(totals,
        stat('Agents', `${fmtInt(mine.length)}${others ? ` · ${fmtInt(others)} of other models` : ''}`),
        stat('Hot (engine)', `${by('hot').length}${of(b.hot_agents)} · ${fmtInt(sum(by('hot'), 'tokens'))} cells`,
          share(by('hot').length, b.hot_agents)),
        stat('Warm (RAM)', `${by('warm').length} · ${fmtBytes(warmBytes)}${of(b.warm_bytes && fmtBytes(b.warm_bytes))}`,
          share(warmBytes, b.warm_bytes)),
        stat('Cold (disk)', `${mine.filter((a) => a.file_bytes).length} files · ${fmtBytes(fileBytes)}${of(b.disk_bytes && fmtBytes(b.disk_bytes))}`,
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
