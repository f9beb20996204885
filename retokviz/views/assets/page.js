
(function () {
  const D = JSON.parse(document.getElementById('data').textContent);
  const $ = (id) => document.getElementById(id);
  const state = {patch: null, timer: null};
  const {rate, block} = retokvizControls(D, D.settings.map((s) => s.keep_rate), state, true);
  const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  const pct = (p) => (100 * p).toFixed(1) + ' %';
  const mega = (m) => (m / 1e6).toFixed(1) + ' M';

  function legend(name, keys) {   // only the entries the picture holds (keys: legend keys of the frame shown)
    return (D.legends[name] || []).filter((e) => e.key === null || !keys || keys.includes(e.key)).map((e) => {
      return '<span class="item"><span class="sw" style="' + e.css + '"></span>' + esc(e.label) + '</span>';
    }).join('');
  }

  function topTable(title, top) {
    const rows = top.map((t, i) => {
      let mark = '';
      if (D.truth !== null && i === 0) mark = t[0] === D.truth ? ' &#10003;' : ' &#10007;';
      return '<tr><td' + (i === 0 ? ' style="font-weight:bold"' : '') + '>' + esc(t[0]) + mark + '</td><td>' +
        pct(t[1]) + '</td></tr>';
    }).join('');
    return '<div class="pred"><div class="muted">' + title + '</div><table>' + rows + '</table></div>';
  }

  function drawOverlay(s) {
    const canvas = $('overlay'), size = canvas.clientWidth || canvas.width;
    canvas.width = size; canvas.height = size;
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, size, size);
    if (state.patch === null) return;
    const rows = D.grid[0], cols = D.grid[1], ch = size / rows, cw = size / cols;
    const owner = s.owner[state.block], token = owner[state.patch[0]][state.patch[1]];
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
      const shares = token >= 0 && owner[r][c] === token;
      if (!shares) { ctx.fillStyle = 'rgba(0,0,0,0.45)'; ctx.fillRect(c * cw, r * ch, cw, ch); }
      else { ctx.strokeStyle = D.colours.shares; ctx.lineWidth = 2; ctx.strokeRect(c * cw + 1, r * ch + 1, cw - 2, ch - 2); }
    }
    ctx.strokeStyle = D.colours.patch; ctx.lineWidth = 3;
    ctx.strokeRect(state.patch[1] * cw + 1.5, state.patch[0] * ch + 1.5, cw - 3, ch - 3);
  }

  function lineage(s) {
    if (state.patch === null) return '';
    const [r, c] = state.patch;
    const items = s.owner.map((owner, b) => {
      const token = owner[r][c], status = D.status_names[s.status[b][r][c]];
      if (token < 0) return '<li>block ' + b + ': dropped</li>';
      let shared = 0;
      owner.forEach((row) => row.forEach((t) => { if (t === token) shared++; }));
      const others = shared > 1 ? ', ' + status + ' with ' + (shared - 1) + ' other patch' + (shared > 2 ? 'es' : '') :
        ', ' + (status === 'kept' ? 'alone' : status);
      return '<li' + (b === state.block ? ' style="font-weight:bold"' : '') + '>block ' + b + ': token ' + token +
        others + '</li>';
    }).join('');
    return '<b>patch (row ' + r + ', col ' + c + ')</b><ul>' + items + '</ul>';
  }

  function chart(s) {
    const x = [...Array(D.num_blocks).keys()];
    const traces = D.settings.map((t, i) => ({
      x: x, y: t.num_tokens, mode: 'lines+markers', name: 'keep ' + t.keep_rate.toFixed(1),
      line: {width: i === state.rate ? 3 : 1, color: i === state.rate ? '#d6336c' : '#adb5bd'},
      marker: {size: i === state.rate ? 7 : 3}, hovertemplate: 'block %{x}: %{y} tokens<extra>keep ' +
        t.keep_rate.toFixed(1) + '</extra>', showlegend: false}));
    const layout = {margin: {l: 40, r: 10, t: 24, b: 34}, height: 220, width: 460,
      title: {text: 'patch tokens leaving each block', font: {size: 12}},
      xaxis: {title: {text: 'block', font: {size: 11}}, dtick: 1}, yaxis: {rangemode: 'tozero'},
      shapes: [{type: 'line', x0: state.block, x1: state.block, yref: 'paper', y0: 0, y1: 1,
        line: {color: '#d6336c', dash: 'dot', width: 1}}]};
    if (window.Plotly) Plotly.react('chart', traces, layout, {displayModeBar: false, responsive: false});
  }

  function render() {
    const s = D.settings[state.rate], view = D.views[state.view];
    $('frame').src = D.images[s.frames[view][state.block]];
    $('rate-value').textContent = s.keep_rate.toFixed(1);
    $('block-value').textContent = state.block + ' (blocks 0 to ' + (D.num_blocks - 1) + ')';
    const keys = (name) => (s.legend_keys[name] || [])[state.block];
    $('legend').innerHTML = state.patch === null ? legend(view, keys(view)) : legend('lineage', keys('status'));
    const tokens = s.num_tokens[state.block], last = s.num_tokens[D.num_blocks - 1];
    let macs = 'MACs ' + mega(s.macs);
    if (D.untouched_macs) macs += ' (' + Math.round(100 * s.macs / D.untouched_macs) + ' % of ' + mega(D.untouched_macs) + ' untouched)';
    $('tokens').innerHTML = '<div class="muted">' + esc(s.method) + '</div>after block ' + state.block + ': <b id="token-count">' +
      tokens + '</b> patch tokens of ' + D.num_patches + ' &middot; after the last: ' + last + '<br>' + macs;
    let pred = topTable('at this setting', s.top);
    if (D.untouched) pred += topTable('untouched model', D.untouched);
    if (D.truth !== null) pred = '<div class="muted">true class: <b>' + esc(D.truth) + '</b></div>' + pred;
    $('prediction').innerHTML = pred;
    $('measured').innerHTML = s.measured;
    $('lineage').innerHTML = lineage(s);
    drawOverlay(s);
    chart(s);
  }

  rate.addEventListener('input', () => { state.rate = +rate.value; render(); });
  block.addEventListener('input', () => { state.block = +block.value; render(); });
  $('views').addEventListener('change', (e) => { state.view = +e.target.value; render(); });
  $('overlay').addEventListener('click', (e) => {
    const box = e.target.getBoundingClientRect();
    const r = Math.min(D.grid[0] - 1, Math.floor((e.clientY - box.top) / box.height * D.grid[0]));
    const c = Math.min(D.grid[1] - 1, Math.floor((e.clientX - box.left) / box.width * D.grid[1]));
    state.patch = state.patch && state.patch[0] === r && state.patch[1] === c ? null : [r, c];
    render();
  });
  $('play').addEventListener('click', () => {
    if (state.timer) { clearInterval(state.timer); state.timer = null; $('play').innerHTML = '&#9654; play'; return; }
    $('play').innerHTML = '&#10073;&#10073; pause';
    if (state.block >= D.num_blocks - 1) { state.block = 0; block.value = 0; render(); }   // from the start again
    state.timer = setInterval(() => {   // one pass through the blocks, then it stops at the last, as a player does
      state.block += 1; block.value = state.block; render();
      if (state.block >= D.num_blocks - 1) { clearInterval(state.timer); state.timer = null; $('play').innerHTML = '&#9654; play'; }
    }, 900);
  });
  window.retokviz = {state: state, render: render, data: D};
  render();
})();
