(function () {
  const D = JSON.parse(document.getElementById('data').textContent);
  const $ = (id) => document.getElementById(id);
  const state = {};
  const {rate, block} = retokvizControls(D, D.keep_rates, state, false);

  // One grid row per kind of part, one grid column per method: every column's parts line up across the page.
  const grid = $('columns'), count = D.columns.length;
  grid.style.gridTemplateColumns = 'repeat(' + count + ', max-content)';   // each part is the picture's width (CSS)
  ['head', 'frame', 'legend', 'tokens', 'prediction'].forEach((kind) => {
    D.columns.forEach((column, i) => {
      const part = document.createElement(kind === 'frame' ? 'img' : 'div');
      part.id = kind + '-' + i;
      part.className = kind;
      if (kind === 'head') part.textContent = column.label;
      if (kind === 'frame') { part.alt = column.label + ': the view'; part.style.aspectRatio = D.size[1] + ' / ' + D.size[0]; }
      grid.appendChild(part);
    });
  });

  function render() {
    const view = D.views[state.view];
    $('rate-value').textContent = D.keep_rates[state.rate].toFixed(2);
    $('budget').textContent = D.budgets ? 'every column at EViT\'s budget: ' + D.budgets[state.rate] +
      ' patch tokens leaving the last block' : '';
    $('block-value').textContent = state.block + ' (blocks 0 to ' + (D.num_blocks - 1) + ')';
    D.columns.forEach((column, i) => {
      const s = column.settings[state.rate];
      $('frame-' + i).src = D.images[s.frames[view][state.block]];
      $('legend-' + i).innerHTML = D.snippets[s.legends[view][state.block]];
      $('tokens-' + i).innerHTML = 'after block ' + state.block +
        ': <b class="token-count">' + s.num_tokens[state.block] + '</b> patch tokens of ' + D.num_patches +
        D.snippets[s.charts[state.block]];
      $('prediction-' + i).innerHTML = D.snippets[s.prediction];
    });
  }

  rate.addEventListener('input', () => { state.rate = +rate.value; render(); });
  block.addEventListener('input', () => { state.block = +block.value; render(); });
  $('views').addEventListener('change', (e) => { state.view = +e.target.value; render(); });
  window.retokviz = {state: state, render: render, data: D};
  render();
})();
