// DOM helpers. Everything the API returns is put in the page as text
// (textContent), never as HTML, so no value can inject markup or script.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h('div', {class: 'card'}, 'text', child…) makes an HTML element.
function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s('line', {x1: 0, …}) makes an SVG element.
function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// replace empties el and puts children in it.
function replace(el, ...children) {
  el.replaceChildren();
  build(el, {}, children);
  return el;
}

// fmtDuration renders seconds as "1h 02m", "4m 05s" or "9s".
function fmtDuration(secs) {
  secs = Math.max(0, Math.round(secs));
  const hh = Math.floor(secs / 3600), mm = Math.floor((secs % 3600) / 60), ss = secs % 60;
  const two = (n) => String(n).padStart(2, '0');
  if (hh > 0) return `${hh}h ${two(mm)}m`;
  if (mm > 0) return `${mm}m ${two(ss)}s`;
  return `${ss}s`;
}

// fmtAgo renders a time as "12s ago" (or "in 12s"), "" when unset.
function fmtAgo(iso) {
  if (!iso) return '';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const d = (Date.now() - t) / 1000;
  return d >= 0 ? fmtDuration(d) + ' ago' : 'in ' + fmtDuration(-d);
}

// fmtTime renders an ISO time in the browser's locale.
function fmtTime(iso) {
  if (!iso) return '';
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toLocaleString();
}

// badge is a small coloured label; kind is ok, warn, bad or muted.
function badge(text, kind, title) {
  return h('span', {class: 'badge ' + (kind || 'muted'), title: title || null}, text);
}

// countdown is a span that the page's ticker keeps showing the time left
// until iso.
function countdown(iso) {
  const el = h('span', {class: 'countdown', 'data-ends': iso || ''});
  tickCountdown(el);
  return el;
}

function tickCountdown(el) {
  const ends = Date.parse(el.getAttribute('data-ends'));
  if (Number.isNaN(ends)) { el.textContent = '—'; return; }
  const left = (ends - Date.now()) / 1000;
  el.textContent = left > 0 ? fmtDuration(left) + ' left' : 'ending';
}

// tickCountdowns refreshes every countdown in the page.
function tickCountdowns() {
  document.querySelectorAll('.countdown').forEach(tickCountdown);
}

// table makes a table from header names and rows of cells, wrapped so a
// narrow screen scrolls it sideways rather than the page. Each cell of a
// full row is labelled with its header, for tables that a phone shows as
// cards (class "cards").
function table(cls, heads, rows) {
  for (const tr of rows.flat(Infinity)) {
    if (tr.children.length !== heads.length) continue;
    [...tr.children].forEach((td, i) => td.setAttribute('data-label', heads[i]));
  }
  return h('div', {class: 'scroll'},
    h('table', {class: cls || null},
      h('thead', {}, h('tr', {}, heads.map((x) => h('th', {}, x)))),
      h('tbody', {}, rows)));
}
