// Prometheus text parsing and small inline SVG charts, by hand: the page loads no library (no
// CDN, works offline), and the server's metrics are plain `name{labels} value` lines.

const SVG = 'http://www.w3.org/2000/svg';

/** Prometheus text format → [{name, labels: {k: v}, value}]. */
export function parseProm(body) {
  const out = [];
  for (const line of body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({name: m[1], labels, value: Number(m[3])});
  }
  return out;
}

/** The value of one series (labels must all match), or null. */
export function sample(samples, name, labels = {}) {
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s ? s.value : null;
}

/** Sum of every series of a family, per value of one label: {label value: sum}. */
export function byLabel(samples, name, label) {
  const out = {};
  for (const s of samples) if (s.name === name) out[s.labels[label]] = (out[s.labels[label]] || 0) + s.value;
  return out;
}

function el(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/**
 * A line chart of one or more series over the same x (sample index): [{label, values, cls}].
 * Returns an <svg> with a title for screen readers and the latest value of each series.
 */
export function lineChart(title, series, unit = '') {
  const w = 320;
  const hgt = 120;
  const pad = 24;
  const svg = el('svg', {viewBox: `0 0 ${w} ${hgt}`, role: 'img', class: 'chart'});
  const latest = series.map((s) => `${s.label} ${fmt(s.values.at(-1))}${unit}`).join(', ');
  const t = el('title', {});
  t.textContent = `${title}: ${latest || 'no data yet'}`;
  svg.append(t);
  const all = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const max = Math.max(0, ...all) || 1;
  const n = Math.max(2, ...series.map((s) => s.values.length));
  svg.append(el('line', {x1: pad, y1: hgt - pad, x2: w - 4, y2: hgt - pad, class: 'axis'}));
  const top = el('text', {x: 2, y: 12, class: 'tick'});
  top.textContent = `${fmt(max)}${unit}`;
  svg.append(top);
  const zero = el('text', {x: 2, y: hgt - pad, class: 'tick'});
  zero.textContent = '0';
  svg.append(zero);
  series.forEach((s, i) => {
    const pts = s.values.map((v, j) => `${pad + (j * (w - pad - 4)) / (n - 1)},${hgt - pad - ((Number.isFinite(v) ? v : 0) / max) * (hgt - pad - 16)}`);
    if (pts.length) svg.append(el('polyline', {points: pts.join(' '), class: `line ${s.cls || `s${i}`}`}));
    const key = el('text', {x: pad + i * 100, y: hgt - 6, class: `key ${s.cls || `s${i}`}`});
    key.textContent = `${s.label}: ${fmt(s.values.at(-1))}${unit}`;
    svg.append(key);
  });
  return svg;
}

function fmt(v) {
  if (v === undefined || v === null || !Number.isFinite(v)) return '–';
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 1) return v.toFixed(1);
  return v.toFixed(3);
}
