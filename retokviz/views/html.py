"""One standalone web page of a trace at many keep rates: sliders for the keep rate and the block, a view
toggle, a token chart and a click-to-follow patch lineage, all working in a browser with no kernel and no network.

    settings = [Setting(rate, arrays, top, macs) for ...]       # one recorded pass per keep rate
    save_html("build/explorer.html", settings, title="EViT on digit 7")

Every frame (keep rate x block x view) is in the page as a base64 PNG (each distinct picture once), next to the
arrays the lineage and the chart are drawn from; plotly.js is inlined, so the page loads nothing from anywhere
(about 6 MB for a bundled model, 4.8 of them plotly.js).
"""
from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retokviz._util.png import png_data_url
from retokviz.views import palette
from retokviz.views.extract import TraceArrays
from retokviz.views.raster import VIEWS, view_image

# The keep rates a page holds by default: 0.3 to 1.0 by 0.1.
KEEP_RATES: tuple[float, ...] = tuple(round(0.3 + 0.1 * step, 1) for step in range(8))
VIEW_LABELS = {"status": "status", "pieces": "pieces", "attention": "attention", "removed": "removed background"}
DISPLAY_PIXELS = 400   # the picture's displayed width; frames are stored at their own size and scaled crisply


@dataclass(frozen=True)
class Setting:
    """One keep rate's recorded pass.

    Attributes:
        keep_rate: the keep rate.
        arrays: the pass's TraceArrays (one image).
        top: [(class name, probability)] the top classes predicted.
        macs: multiply-accumulates of one image.
        measured: an HTML fragment shown under the prediction: what a sweep table measured at this setting
            (the explorer's "measured" line), or "" for none. Library-made markup, inserted as is.
    """

    keep_rate: float
    arrays: TraceArrays
    top: tuple[tuple[str, float], ...]
    macs: int
    measured: str = ""


def usable_views(arrays: TraceArrays, views: Sequence[str] = VIEWS) -> list[str]:
    """The views that can be drawn from `arrays` ("removed" needs a mask, "attention" class-attention scores)."""
    usable = []
    for view in views:
        try:
            view_image(arrays, view, arrays.num_blocks - 1)
        except ValueError:
            continue
        usable.append(view)
    return usable


def frame_count(settings: Sequence[Setting], views: Sequence[str] | None = None) -> int:
    """How many frames `page` stores: keep rates x blocks x views."""
    views = usable_views(settings[0].arrays) if views is None else views
    return sum(setting.arrays.num_blocks for setting in settings) * len(views)


def payload(settings: Sequence[Setting], views: Sequence[str], *, title: str,
            untouched: Sequence[tuple[str, float]] | None = None, untouched_macs: int | None = None,
            truth: str | None = None) -> dict:
    """What the page's script reads: "images", the distinct frames as PNG data URLs; per keep rate its frames
    ([view][block] indices into "images"), tokens per block,
    owners and statuses per block ([L][rows][cols], for the lineage), prediction, MACs and the measured line; plus
    the legends."""
    first = settings[0].arrays
    images: list[str] = []          # each distinct picture once: blocks between reductions look alike
    known: dict[bytes, int] = {}

    def frame(rgb: np.ndarray) -> int:
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16).digest()
        if key not in known:
            known[key] = len(images)
            images.append(png_data_url(rgb))
        return known[key]

    items = []
    for setting in settings:
        arrays = setting.arrays
        if arrays.grid != first.grid or arrays.num_blocks != first.num_blocks:
            raise ValueError("every setting of a page must come from one model and image (one grid, one depth)")
        items.append({
            "keep_rate": setting.keep_rate,
            "method": arrays.method,
            "frames": {view: [frame(view_image(arrays, view, block)) for block in range(arrays.num_blocks)]
                       for view in views},
            "num_tokens": arrays.num_tokens.tolist(),
            "owner": arrays.owner.tolist(),
            "status": arrays.status.astype(int).tolist(),
            "reduction_blocks": list(arrays.reduction_blocks),
            "top": [[name, float(p)] for name, p in setting.top],
            "macs": int(setting.macs),
            "measured": setting.measured,
        })
    legends = palette.to_payload()["legends"]
    return {
        "title": title,
        "views": list(views),
        "view_labels": [VIEW_LABELS.get(view, view) for view in views],
        "legends": legends,
        "grid": list(first.grid),
        "size": list(first.picture.shape[:2]),
        "num_patches": first.num_patches,
        "num_blocks": first.num_blocks,
        "status_names": ["kept", "merged", "fused", "dropped"],
        "untouched": None if untouched is None else [[name, float(p)] for name, p in untouched],
        "untouched_macs": untouched_macs,
        "truth": truth,
        "settings": items,
        "images": images,
        "colours": {"patch": palette.LINEAGE_PATCH_HEX, "shares": palette.LINEAGE_HEX},
    }


def page(settings: Sequence[Setting], *, title: str = "retokviz explorer",
         untouched: Sequence[tuple[str, float]] | None = None, untouched_macs: int | None = None,
         truth: str | None = None, views: Sequence[str] | None = None) -> str:
    """The page as one HTML string.

    Args:
        settings: one per keep rate, in slider order, all of one model and image.
        title: the heading.
        untouched: the top classes of the model without reduction; untouched_macs: its MACs.
        truth: the image's true class name, or None.
        views: the views to hold (default: every one the arrays can draw).

    Raises:
        ValueError: no settings, or settings of different grids or depths.
    """
    if not settings:
        raise ValueError("a page needs at least one setting (one recorded pass)")
    from plotly.offline import get_plotlyjs

    views = usable_views(settings[0].arrays) if views is None else list(views)
    data = json.dumps(payload(settings, views, title=title, untouched=untouched, untouched_macs=untouched_macs,
                              truth=truth), separators=(",", ":"))
    data = data.replace("</", "<\\/")   # nothing in the data can close its script element
    plotly = get_plotlyjs().replace("</script", "<\\/script")
    template = _TEMPLATE.replace("__TITLE__", html.escape(title)).replace("__WIDTH__", str(DISPLAY_PIXELS))
    head, rest = template.split("__PLOTLY__")   # inserted by position: nothing inserted is searched again
    middle, rest = rest.split("__DATA__")
    before, tail = rest.split("__SCRIPT__")
    return head + plotly + middle + data + before + _SCRIPT + tail


def save_html(path: str | os.PathLike, settings: Sequence[Setting], **kwargs) -> Path:
    """Write `page(settings, **kwargs)` to `path` (folders made as needed); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(settings, **kwargs), encoding="utf-8")
    return path


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:18px;color:#222}
h1{font-size:18px;margin:0 0 10px}
.main{display:flex;gap:22px;align-items:flex-start}
.viewer{position:relative;width:__WIDTH__px;height:__WIDTH__px;flex:none}
.viewer img,.viewer canvas{position:absolute;left:0;top:0;width:__WIDTH__px;height:__WIDTH__px}
.viewer img{image-rendering:pixelated}
.viewer canvas{cursor:crosshair}
.side{width:560px}
.row{margin:6px 0}
.row label.name{display:inline-block;width:76px;color:#555}
input[type=range]{width:300px;vertical-align:middle}
.views label{margin-right:10px;white-space:nowrap}
.legend span.sw{display:inline-block;width:11px;height:11px;border:1px solid #888;vertical-align:-1px;margin-right:3px}
.legend .item{margin-right:12px;white-space:nowrap;font-size:12px}
table{font-size:13px;border-collapse:collapse}td{padding:1px 8px 1px 0}
.pred{display:inline-block;vertical-align:top;margin-right:20px}
.muted{color:#666;font-size:12px}
#lineage ul{margin:2px 0;padding-left:18px;font-size:12px}
</style></head><body>
<h1 id="title">__TITLE__</h1>
<div class="main">
 <div>
  <div class="viewer"><img id="frame" alt="the view"><canvas id="overlay"></canvas></div>
  <div id="legend" class="legend row"></div>
  <div class="muted">click a patch to follow it through the blocks; click it again to stop</div>
 </div>
 <div class="side">
  <div class="row"><label class="name" for="rate">keep rate</label><input type="range" id="rate"> <b id="rate-value"></b></div>
  <div class="row"><label class="name" for="block">block</label><input type="range" id="block"> <b id="block-value"></b>
   <button id="play" type="button">&#9654; play</button></div>
  <div class="row views" id="views"><label class="name">view</label></div>
  <div class="row" id="tokens"></div>
  <div id="chart" style="width:460px;height:220px"></div>
  <div class="row" id="prediction"></div>
  <div class="row" id="measured"></div>
  <div class="row" id="lineage"></div>
 </div>
</div>
<script>__PLOTLY__</script>
<script type="application/json" id="data">__DATA__</script>
<script>__SCRIPT__</script>
</body></html>
"""

_SCRIPT = r"""
(function () {
  const D = JSON.parse(document.getElementById('data').textContent);
  const $ = (id) => document.getElementById(id);
  const state = {rate: D.settings.length - 1, block: D.num_blocks - 1, view: 0, patch: null, timer: null};
  D.settings.forEach((s, i) => { if (Math.abs(s.keep_rate - 0.7) < 1e-6) state.rate = i; });
  const rate = $('rate'), block = $('block');
  rate.min = 0; rate.max = D.settings.length - 1; rate.step = 1; rate.value = state.rate;
  block.min = 0; block.max = D.num_blocks - 1; block.step = 1; block.value = state.block;
  D.views.forEach((v, i) => {
    const label = document.createElement('label');
    label.innerHTML = '<input type="radio" name="view" value="' + i + '"' + (i === 0 ? ' checked' : '') + '> ' +
      D.view_labels[i];
    $('views').appendChild(label);
  });
  const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  const pct = (p) => (100 * p).toFixed(1) + ' %';
  const mega = (m) => (m / 1e6).toFixed(1) + ' M';

  function legend(name) {
    return (D.legends[name] || []).map((e) => {
      const fill = e.hatched ? 'repeating-linear-gradient(45deg,' + e.colour + ' 0 3px,#fff 3px 5px)' : e.colour;
      return '<span class="item"><span class="sw" style="background:' + fill + '"></span>' + esc(e.label) + '</span>';
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
    $('block-value').textContent = state.block + ' of ' + (D.num_blocks - 1);
    $('legend').innerHTML = legend(state.patch === null ? view : 'lineage');
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
    state.timer = setInterval(() => { state.block = (state.block + 1) % D.num_blocks; block.value = state.block; render(); }, 900);
  });
  window.retokviz = {state: state, render: render, data: D};
  render();
})();
"""
