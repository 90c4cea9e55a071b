(function () {
  'use strict';
  const errors = [];
  function recordError(msg) {
    errors.push(String(msg));
    const el = document.getElementById('report-errors');
    el.textContent = errors.join('\n');
    el.hidden = false;
  }
  window.addEventListener('error', function (e) {
    recordError(e.message + (e.filename ? ' (' + e.filename + ':' + e.lineno + ')' : ''));
  });
  const consoleError = console.error;
  console.error = function () {
    recordError(Array.prototype.join.call(arguments, ' '));
    consoleError.apply(console, arguments);
  };
  const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
                   '#7f7f7f', '#bcbd22', '#17becf'];
  // Tick labels that never throw: Chart.js's own formatter fails
  // ("minimumFractionDigits value is out of range") when the tick step is not
  // finite, as for values near 1e308.
  function tickLabel(v, i, ticks) {
    if (!isFinite(v)) return '';
    if (v === 0) return '0';
    const a = Math.abs(v);
    const step = ticks && ticks.length > 1 ? Math.abs(ticks[1].value - ticks[0].value) : a;
    if (a >= 1e15 || a < 1e-4 || !isFinite(step) || !(step > 0))
      return v.toExponential(2).replace(/\.?0+e/, 'e');
    return v.toFixed(Math.max(0, Math.min(20, -Math.floor(Math.log10(step)))));
  }
  function logTickLabel(v) {  // 1, 2 and 5 times a power of ten, like Chart.js
    if (!(v > 0) || !isFinite(v)) return '';
    const m = Math.round(v / Math.pow(10, Math.floor(Math.log10(v))) * 1e6) / 1e6;
    return m === 1 || m === 2 || m === 5 ? tickLabel(v, 0, []) : '';
  }
  function axis(a) {
    a = a || {};
    const s = {type: a.log ? 'logarithmic' : 'linear',
               title: {display: !!a.label, text: a.label || ''},
               ticks: {callback: a.log ? logTickLabel : tickLabel}};
    if (a.min !== undefined) s.min = a.min;
    if (a.max !== undefined) s.max = a.max;
    return s;
  }
  // Chart.js draws a constant series on value-1..value+1, where a learning
  // rate of 0.01 reads as 0: give it an axis around its value instead.
  function fitConstant(s, spec) {
    let lo = Infinity, hi = -Infinity;
    spec.series.forEach(function (d) {
      d.data.forEach(function (p) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); });
    });
    if (lo !== hi || !isFinite(lo) || (spec.y && spec.y.log) || s.min !== undefined ||
        s.max !== undefined)
      return;
    const d = lo === 0 ? 1 : Math.abs(lo) / 2;
    s.min = lo - d;
    s.max = lo + d;
  }
  function base(spec, legend) {
    return {animation: false, maintainAspectRatio: false, responsive: true,
            plugins: {title: {display: true, text: spec.title}, legend: {display: legend}}};
  }
  function lineConfig(spec) {
    const options = base(spec, spec.series.length > 1);
    options.scales = {x: axis(spec.x), y: axis(spec.y)};
    fitConstant(options.scales.y, spec);
    return {type: 'scatter', options: options, data: {datasets: spec.series.map(function (s, i) {
      const c = PALETTE[i % PALETTE.length];
      return {label: s.label, showLine: true, borderColor: c, backgroundColor: c, borderWidth: 1.5,
              pointRadius: s.data.length > 60 ? 0 : 2.5,
              data: s.data.map(function (p) { return {x: p[0], y: p[1]}; })};
    })}};
  }
  function barConfig(spec) {
    const options = base(spec, false);
    const x = spec.x || {};
    options.scales = {x: {title: {display: !!x.label, text: x.label || ''}}, y: axis(spec.y)};
    return {type: 'bar', options: options, data: {labels: spec.labels,
            datasets: [{label: spec.title, data: spec.values, backgroundColor: '#1f77b4'}]}};
  }
  function heatColor(v) {
    v = Math.max(-1, Math.min(1, v));
    const r = v < 0 ? Math.round(255 * (1 + v)) : 255;
    const g = Math.round(255 * (1 - Math.abs(v)));
    const b = v > 0 ? Math.round(255 * (1 - v)) : 255;
    return 'rgb(' + r + ',' + g + ',' + b + ')';
  }
  function heatmapConfig(spec, caption) {
    const m = spec.matrix, n = m.length;
    const cells = {id: 'cells', afterDatasetsDraw: function (chart) {
      const ctx = chart.ctx, x = chart.scales.x, y = chart.scales.y, a = chart.chartArea;
      const w = Math.abs(x.getPixelForValue(1) - x.getPixelForValue(0));
      const h = Math.abs(y.getPixelForValue(1) - y.getPixelForValue(0));
      ctx.save();
      ctx.beginPath();
      ctx.rect(a.left, a.top, a.right - a.left, a.bottom - a.top);
      ctx.clip();
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        ctx.fillStyle = heatColor(m[i][j]);
        ctx.fillRect(x.getPixelForValue(j) - w / 2, y.getPixelForValue(i) - h / 2, w + 0.5, h + 0.5);
      }
      ctx.restore();
    }};
    const options = base(spec, false);
    const ticks = {callback: function (v) { return Number.isInteger(v) ? v : ''; }};
    options.scales = {x: {type: 'linear', min: -0.5, max: n - 0.5, ticks: ticks,
                          title: {display: true, text: 'bit'}},
                      y: {type: 'linear', min: -0.5, max: n - 0.5, reverse: true, ticks: ticks,
                          title: {display: true, text: 'bit'}}};
    options.plugins.tooltip = {enabled: false};
    options.onHover = function (e, els, chart) {
      const j = Math.round(chart.scales.x.getValueForPixel(e.x));
      const i = Math.round(chart.scales.y.getValueForPixel(e.y));
      if (caption && i >= 0 && j >= 0 && i < n && j < n)
        caption.textContent = 'bits ' + i + ' and ' + j + ': correlation ' + m[i][j].toFixed(4);
    };
    return {type: 'scatter', options: options, plugins: [cells],
            data: {datasets: [{label: 'correlation', data: []}]}};
  }
  function painted(canvas) {
    try {
      const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let k = 3; k < d.length; k += 4) if (d[k] !== 0) n++;
      return n;
    } catch (e) {
      return -1;
    }
  }
  const specs = JSON.parse(document.getElementById('report-data').textContent);
  const made = [];
  if (typeof Chart === 'undefined') {
    document.body.dataset.reportStatus = 'no-chartjs';
    return;
  }
  specs.forEach(function (spec) {
    const canvas = document.getElementById(spec.id);
    try {
      let cfg;
      if (spec.kind === 'line') cfg = lineConfig(spec);
      else if (spec.kind === 'bar') cfg = barConfig(spec);
      else if (spec.kind === 'heatmap')
        cfg = heatmapConfig(spec, document.getElementById(spec.id + '-caption'));
      else throw new Error('unknown chart kind ' + spec.kind);
      made.push([canvas, new Chart(canvas, cfg)]);
    } catch (e) {
      recordError(spec.id + ' (' + spec.title + '): ' + e.message);
    }
  });
  setTimeout(function () {
    made.forEach(function (mc) {
      mc[0].dataset.drawn = mc[1].width + 'x' + mc[1].height;
      mc[0].dataset.painted = painted(mc[0]);
      const y = mc[1].scales.y;
      if (y) mc[0].dataset.y = y.min + ':' + y.max;  // the y axis drawn
    });
    document.body.dataset.charts = made.length;
    document.body.dataset.reportStatus = 'done';
  }, 0);
})();
