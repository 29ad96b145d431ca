// DOM and formatting helpers shared by every page: element building, numbers, bytes, times.

/** Builds an element: h('button', {class: 'x', onclick: f}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'value') el.value = String(v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A unique id for label/input pairs. */
export function uid(prefix = 'f') {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled input: returns [wrapper, input]. */
export function field(label, input, hint) {
  input.id = input.id || uid();
  const wrap = h('div', {class: 'field'}, h('label', {for: input.id}, label), input);
  if (hint) wrap.append(h('span', {class: 'muted small'}, hint));
  return [wrap, input];
}

/** A select with [value, label] options. */
export function select(options, value) {
  const el = h('select');
  for (const o of options) {
    const [v, l] = Array.isArray(o) ? o : [o, o];
    el.append(h('option', {value: v, selected: v === value}, l));
  }
  return el;
}

export function fmtInt(n) {
  return n === undefined || n === null ? '–' : Number(n).toLocaleString('en-US');
}

export function fmtBytes(n) {
  if (n === undefined || n === null) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function fmtMs(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '–';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

/** "5 s ago" from unix seconds. */
export function fmtAgo(secs) {
  if (!secs) return '–';
  const d = Math.max(0, Date.now() / 1000 - secs);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return new Date(secs * 1000).toISOString().slice(0, 16).replace('T', ' ');
}

/** A short status line that says what went wrong, in the server's words. */
export function errorBox(err) {
  return h('p', {class: 'error', role: 'alert'}, String(err && err.message ? err.message : err));
}
