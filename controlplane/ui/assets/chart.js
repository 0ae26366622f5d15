// A small line chart in SVG, no framework: time on x, counts on y.
'use strict';

// lineChart draws series [{name, cls, points: [{t: ms, v: number}]}] over
// the last windowMs milliseconds, opts.width pixels wide (the container's
// width, so labels keep their size on any screen).
function lineChart(series, opts) {
  const W = Math.max(280, Math.round(opts.width || 640)), H = 170, L = 36, R = 8, T = 10, B = 24;
  const now = opts.now || Date.now();
  const from = now - opts.windowMs;
  let max = 1;
  for (const sr of series) for (const p of sr.points) max = Math.max(max, p.v);
  max = niceCeil(max);
  const x = (t) => L + ((t - from) / opts.windowMs) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': opts.label});
  // Grid and y labels.
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s('line', {class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v)}));
    svg.append(s('text', {class: 'axis', x: L - 4, y: y(v) + 4, 'text-anchor': 'end'}, fmtCount(v)));
  }
  // x labels: the window's start and now.
  svg.append(s('text', {class: 'axis', x: L, y: H - 6}, '-' + fmtDuration(opts.windowMs / 1000)));
  svg.append(s('text', {class: 'axis', x: W - R, y: H - 6, 'text-anchor': 'end'}, 'now'));
  for (const sr of series) {
    const pts = sr.points.filter((p) => p.t >= from);
    if (pts.length === 0) continue;
    // A step line: a count holds until the next sample.
    let d = `M${x(pts[0].t).toFixed(1)},${y(pts[0].v).toFixed(1)}`;
    for (let i = 1; i < pts.length; i++) {
      d += `H${x(pts[i].t).toFixed(1)}V${y(pts[i].v).toFixed(1)}`;
    }
    d += `H${x(now).toFixed(1)}`;
    svg.append(s('path', {class: 'series ' + sr.cls, d}, s('title', {}, sr.name)));
  }
  const legend = h('div', {class: 'legend'},
    series.map((sr) => h('span', {class: 'key ' + sr.cls}, sr.name)));
  return h('figure', {class: 'chartbox'}, svg, legend);
}

function niceCeil(v) {
  if (v <= 4) return 4;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 4, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtCount(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}
