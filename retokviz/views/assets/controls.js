// What both saved pages share: the setting a page opens on (the one it was saved on, in D.start) and its keep-rate
// and block sliders and view buttons. `rates` are the page's keep rates, in slider order; `state` gets rate, block
// and view (indices); `fallback` says whether, without a saved keep rate and no 0.7 among them, it opens on the last.
function retokvizControls(D, rates, state, fallback) {
  const $ = (id) => document.getElementById(id);
  state.rate = rates.length - 1; state.block = D.num_blocks - 1; state.view = 0;
  const opening = D.start.keep_rate === undefined ? 0.7 : D.start.keep_rate;   // the setting it was saved on
  let nearest = Infinity;
  rates.forEach((k, i) => { const d = Math.abs(k - opening); if (d < nearest - 1e-9) { nearest = d; state.rate = i; } });
  if (fallback && D.start.keep_rate === undefined && nearest > 1e-6) state.rate = rates.length - 1;
  if (D.start.block !== undefined) state.block = Math.min(D.start.block, D.num_blocks - 1);
  if (D.start.view !== undefined && D.views.indexOf(D.start.view) >= 0) state.view = D.views.indexOf(D.start.view);
  const rate = $('rate'), block = $('block');
  rate.min = 0; rate.max = rates.length - 1; rate.step = 1; rate.value = state.rate;
  block.min = 0; block.max = D.num_blocks - 1; block.step = 1; block.value = state.block;
  D.views.forEach((v, i) => {
    const label = document.createElement('label');
    label.innerHTML = '<input type="radio" name="view" value="' + i + '"' + (i === state.view ? ' checked' : '') + '> ' +
      D.view_labels[i];
    $('views').appendChild(label);
  });
  return {rate: rate, block: block};
}
