"""Notebook 03's widget: ImagePiece's merge rounds at one reduction block, one step at a time (the candidates, each
merge round, the re-scoring, the discard), each step drawn and told in words and counts (`imagepiece_lesson`). The
rounds themselves are read from ImagePiece by retokviz.tutorial.rounds.
"""
from __future__ import annotations

import html
import re
from typing import Any

from retokviz.explorer.controls import DISPLAY, SETTING, Redraws, check_int, check_keep_rate, choose
from retokviz.explorer.session import THREADS, Run, Session, threads
from retokviz.methods.imagepiece import ImagePiece
from retokviz.models.bundled import name as bundled_name
from retokviz.patch import method_of
from retokviz.tutorial.widgets.base import LESSON_IMAGES, PIXELS, _session


IMAGEPIECE_RATES = (0.1, 0.95, 0.05)     # at 1.0 nothing is reduced, so there would be no rounds to step through
# What each control does, in plain words (shown on hover).
IMAGEPIECE_TOOLTIPS = {
    "image": "which image the model reads",
    "keep rate": "the share of the tokens a reduction block keeps: the K semantic tokens are this share of the "
                 "tokens the block receives",
    "block": "which reduction block to follow (ImagePiece reduces at these blocks only)",
    "step": "drag through the steps of the block: the candidates, each merge round, the re-scoring, the discard",
    "back": "the step before",
    "next": "the next step",
    "picture": "click a patch to follow its token through the steps (arrow keys move, Escape lets go)",
}
_GREY = (0.6, 0.3)                       # a greyed patch: its grey times 0.6 plus 0.3 (the pieces view's grey)
_NUMBER = re.compile(r'<b data-n="([^"]+)">(\d+)</b>')
_STEP_NAME = re.compile(r'data-step="([^"]+)"')


def _n(key: str, value: int) -> str:
    """A number as the lesson shows it, tagged so that `shown()` reads it back."""
    return f'<b data-n="{key}">{int(value)}</b>'


def _legend(entries: list[tuple[str, str, str]]) -> str:
    """A legend in the explorer's look (panels.legend_html): [(label, "#rrggbb", palette hatch)]."""
    from retokviz.views import palette

    spans = [f'<span style="white-space:nowrap;margin-right:10px"><span style="display:inline-block;'
             f'box-sizing:border-box;width:12px;height:12px;{palette.swatch_css(colour, hatch)};'
             f'vertical-align:-1px"></span> {html.escape(label)}</span>' for label, colour, hatch in entries]
    return f'<div style="font-size:12px;line-height:1.6">{"".join(spans)}</div>'


class ImagePieceLesson(Redraws):
    """Notebook 03: ImagePiece at one reduction block of one image, one step at a time: the candidates (the
    tokens with the least class attention), each merge round (pieces form), the re-scoring (pieces that gained
    meaning enter the kept set and displace semantic tokens) and the discard (what is let go of). Each step is
    drawn on the explorer's picture, with what it did in words and counts; a click on a patch follows its token.

    The rounds are read from ImagePiece itself (retokviz.tutorial.rounds.merge_rounds), checked against the
    model's recorded pass; the discard step is the explorer's status view of that pass.

    Controls (ipywidgets; `set` them in code): `image`, `keep_rate`, `block`, `step`, the `back` and `next`
    buttons, and the picture (`picture.picked`).

    Attributes:
        rounds: the BlockRounds shown (semantic tokens, the state after each round, where each token went).
        steps: the names of the block's steps, in order ("candidates", "round 1", "re-scoring 1", ..., "discard").
        picked: the patch followed, (row, col), or None.
        run: the Session's recorded pass (trace, arrays, prediction).
    """

    def __init__(self, session: Session, model: str, *, keep_rate: float | None = None, block: int | None = None,
                 step: int | str = 0, image: int = 0) -> None:
        import ipywidgets as w

        from retokviz.explorer.parts import Picture

        self.session, self.model_name = session, model
        self._holding, self._pending, self._syncing = 1, 0, False
        self._cache: dict[tuple, tuple[Run, dict]] = {}
        own = method_of(self.model)
        default = own.keep_rate if isinstance(own, ImagePiece) else 0.7
        image = check_int("image", image, 0, len(session.gallery) - 1)
        keep_rate = check_keep_rate(default if keep_rate is None else keep_rate, IMAGEPIECE_RATES)
        self.picked: tuple[int, int] | None = None
        run, rounds = self._passes(image, keep_rate)
        blocks = sorted(rounds)
        if not blocks:
            raise ValueError(f"ImagePiece at keep rate {keep_rate} reduces nowhere in {model}; lower the keep rate")
        block = blocks[0] if block is None else choose("block", block, [(f"block {b}", b) for b in blocks])
        names = self._step_names(rounds[block])
        step = self._check_step(step, names)
        style = {"description_width": "70px"}
        low, high, by = IMAGEPIECE_RATES
        self.image = w.Dropdown(options=[(f"{i}: {e.name}", i) for i, e in enumerate(session.gallery.entries)],
                                value=image, description="image", style=style, layout=w.Layout(width="300px"),
                                tooltip=IMAGEPIECE_TOOLTIPS["image"])
        self.keep_rate = w.FloatSlider(value=keep_rate, min=low, max=high, step=by, description="keep rate",
                                       readout_format=".2f", style=style, layout=w.Layout(width="400px"),
                                       tooltip=IMAGEPIECE_TOOLTIPS["keep rate"])
        self.block = w.ToggleButtons(options=[(f"block {b}", b) for b in blocks], value=block,
                                     description="block", style={**style, "button_width": "auto"},
                                     tooltips=[IMAGEPIECE_TOOLTIPS["block"]] * len(blocks))
        self.step = w.IntSlider(value=step, min=0, max=len(names) - 1, description="step", style=style,
                                layout=w.Layout(width="300px"), tooltip=IMAGEPIECE_TOOLTIPS["step"])
        self.back = w.Button(description="◀ back", tooltip=IMAGEPIECE_TOOLTIPS["back"],
                             layout=w.Layout(width="80px"))
        self.next = w.Button(description="next step ▶", tooltip=IMAGEPIECE_TOOLTIPS["next"],
                             layout=w.Layout(width="110px"), button_style="info")
        self.back.on_click(lambda _: self._move(-1))
        self.next.on_click(lambda _: self._move(+1))
        rows, cols = run.arrays.grid
        self.picture = Picture(size=PIXELS, grid=[rows, cols], hint=IMAGEPIECE_TOOLTIPS["picture"])
        self.legend = w.HTML(layout=w.Layout(width=f"{PIXELS}px"))
        self.headline = w.HTML()
        self.text = w.HTML(layout=w.Layout(width="440px"))
        self.outline = w.HTML(layout=w.Layout(width="440px"))
        self.story = w.HTML(layout=w.Layout(width="440px"))
        self.root = w.VBox([
            self.headline,
            w.HBox([
                w.VBox([self.picture, self.legend], layout=w.Layout(width=f"{PIXELS}px", min_width=f"{PIXELS}px",
                                                                    margin="0 16px 0 0")),
                w.VBox([self.image, self.keep_rate, self.block, w.HBox([self.step, self.back, self.next]),
                        self.text, self.outline, self.story]),
            ]),
        ])
        for control, level in ((self.image, SETTING), (self.keep_rate, SETTING), (self.block, SETTING),
                               (self.step, DISPLAY)):
            control.observe(lambda change, level=level: None if self._syncing else self._changed(level),
                            names="value")
        self.picture.observe(self._on_pick, names="picked")
        self._holding, self._pending = 0, 0
        self._refresh(SETTING)

    # --- what is shown ---

    @property
    def model(self):
        return self.session.models[self.model_name]

    @property
    def run(self) -> Run:
        return self._passes(self.image.value, self.keep_rate.value)[0]

    @property
    def rounds(self):
        return self._passes(self.image.value, self.keep_rate.value)[1][self.block.value]

    @property
    def steps(self) -> list[str]:
        return self._step_names(self.rounds)

    def shown(self) -> dict[str, Any]:
        """What the lesson shows now, read back from its text: {"block", "step" (its name), "index" (0-based),
        and every count the text gives: "received", "semantic", "candidates", "merged", "pieces", "tokens",
        "pieces kept", "displaced", "kept", "let go", "patches let go"} (each where the step names it)."""
        found = _STEP_NAME.search(self.text.value)
        if found is None:
            raise ValueError("the lesson shows nothing yet")
        counts = {key: int(value) for key, value in _NUMBER.findall(self.text.value)}
        return {"block": self.block.value, "step": found.group(1), "index": self.step.value, **counts}

    # --- the passes ---

    def _passes(self, image: int, keep_rate: float) -> tuple[Run, dict]:
        """The recorded pass (the Session's, cached) and the rounds read from ImagePiece, for one setting."""
        from retokviz.explorer.session import rate_key
        from retokviz.tutorial.rounds import merge_rounds

        key = (image, rate_key(keep_rate))
        if key not in self._cache:
            run = self.session.run(self.model_name, image, "imagepiece", keep_rate)
            tensor = self.session.gallery.input_for(image, self.model)[0]
            dests = {b: layer.step.dest for b, layer in enumerate(run.trace.layers) if layer.step is not None}
            with threads(self.session.threads):
                rounds = merge_rounds(self.model, tensor, run.method, dests)
            self._cache[key] = (run, rounds)
        return self._cache[key]

    @staticmethod
    def _step_names(rounds) -> list[str]:
        names = ["candidates"]
        for after in rounds.after:
            names.append(f"round {after.round}")
            if after is not rounds.after[-1]:
                names.append(f"re-scoring {after.round}")
        return names + ["discard"]

    @staticmethod
    def _check_step(step: int | str, names: list[str]) -> int:
        if isinstance(step, str):
            return names.index(choose("step", step, [(name, name) for name in names]))
        return check_int("step", step, 0, len(names) - 1)

    # --- controls ---

    def set(self, *, image: int | None = None, keep_rate: float | None = None, block: int | None = None,
            step: int | str | None = None) -> "ImagePieceLesson":
        """Set the image, the keep rate, the block and the step (an index, or a name such as "round 1" or
        "discard"), drawn once; everything is checked before anything changes.

        Raises:
            ValueError: an image, keep rate (0.1..0.95) or step out of range, a block where ImagePiece does not
                reduce at that keep rate, an unknown step name (the message names the valid ones).
        """
        image = self.image.value if image is None else check_int("image", image, 0, len(self.session.gallery) - 1)
        rate = self.keep_rate.value if keep_rate is None else check_keep_rate(keep_rate, IMAGEPIECE_RATES)
        _, rounds = self._passes(image, rate)
        blocks = sorted(rounds)
        if not blocks:
            raise ValueError(f"ImagePiece at keep rate {rate} reduces nowhere here; lower the keep rate")
        if block is not None:
            block = choose("block", block, [(f"block {b}", b) for b in blocks])
        chosen = block if block is not None else (self.block.value if self.block.value in blocks else blocks[0])
        names = self._step_names(rounds[chosen])
        if step is not None:
            step = self._check_step(step, names)
        with self._hold():
            for control, value in ((self.image, image), (self.keep_rate, rate)):
                if value != control.value:
                    control.value = value
            self._sync_blocks(blocks, chosen)
            if step is not None and step != self.step.value:
                self.step.max = max(self.step.max, step)
                self.step.value = step
            self._changed(SETTING)
        return self

    def next_step(self) -> "ImagePieceLesson":
        """One step on (as the "next step" button); at the last step, nothing changes."""
        return self._move(+1)

    def _move(self, by: int) -> "ImagePieceLesson":
        self.step.value = min(max(self.step.value + by, 0), self.step.max)
        return self

    def _sync_blocks(self, blocks: list[int], block: int) -> None:
        """The block buttons for the blocks where ImagePiece reduces at this keep rate, `block` chosen (no redraw
        of their own)."""
        self._syncing = True
        try:
            options = [(f"block {b}", b) for b in blocks]
            if list(self.block.options) != options:
                self.block.options = options
                self.block.tooltips = [IMAGEPIECE_TOOLTIPS["block"]] * len(blocks)
            self.block.value = block
        finally:
            self._syncing = False

    def _on_pick(self, change: dict) -> None:
        picked = change["new"]
        self.picked = None if picked is None else (int(picked[0]), int(picked[1]))
        self._changed(DISPLAY)

    # --- drawing ---

    def _refresh(self, level: int) -> None:
        import numpy as np

        from retokviz._util.png import png_bytes

        run, rounds = self._passes(self.image.value, self.keep_rate.value)
        if level >= SETTING:
            blocks = sorted(rounds)
            self._sync_blocks(blocks, self.block.value if self.block.value in blocks else blocks[0])
            names = self._step_names(rounds[self.block.value])
            self._syncing = True
            try:
                self.step.max = len(names) - 1     # (the slider clamps its value)
            finally:
                self._syncing = False
        block = rounds[self.block.value]
        names = self._step_names(block)
        index = self.step.value
        self.back.disabled, self.next.disabled = index == 0, index == len(names) - 1
        rgb, legend = _step_picture(run.arrays, block, names[index], self.picked)
        self.picture.value = png_bytes(rgb, max(1, round(PIXELS / rgb.shape[0])), compress_level=1)
        self.legend.value = legend
        self.text.value = _step_text(run.arrays, block, names[index], self.keep_rate.value, run.method.fuse)
        self.outline.value = _steps_html(names, index)
        self.story.value = "" if self.picked is None else _patch_story(run.arrays, block, names, index, self.picked)
        entry = self.session.gallery.entries[self.image.value]
        top, probability = run.prediction.top[0]
        self.headline.value = (
            f'<div style="font-size:15px"><b>{html.escape(self.model_name)}</b> · {html.escape(entry.name)} · '
            f'ImagePiece at keep rate {self.keep_rate.value:.2f}, {run.method.merge_rounds} merge rounds</div>'
            f'<div style="font-size:12px;color:#555">the model reads <b>{html.escape(top)}</b> '
            f'({probability:.0%}); {int(np.asarray(run.arrays.num_tokens)[-1])} of {run.arrays.num_patches} patch '
            'tokens leave the last block</div>')

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.root._repr_mimebundle_(**kwargs)


def _received(arrays, block: int):
    """[rows, cols] the token (among those `block` received) carrying each patch, -1 if let go of before."""
    import numpy as np

    if block == 0:
        return np.arange(arrays.num_patches, dtype=np.int64).reshape(arrays.grid)
    return arrays.owner[block - 1].astype(np.int64)


def _state(rounds, name: str):
    """(group [T], kept [T] or None, pieces [T] bool) of the tokens at step `name`."""
    import numpy as np

    if name == "candidates":
        return np.arange(rounds.received), None, np.zeros(rounds.received, dtype=bool)
    number = int(name.split()[-1]) if name != "discard" else len(rounds.after)
    if number == 0:                               # no round could merge: the discard keeps the semantic tokens
        return np.arange(rounds.received), rounds.final_kept, np.zeros(rounds.received, dtype=bool)
    after = rounds.after[number - 1]
    kept = None if name.startswith("round") else after.kept
    return after.group, kept, after.pieces


def _one_block(arrays, owner, pieces):
    """TraceArrays of one block whose owners and pieces are `owner` and `pieces` ([rows, cols]), for raster's
    drawing functions."""
    from dataclasses import replace

    import numpy as np

    from retokviz.trace.record import Status

    status = np.where(pieces >= 0, Status.MERGED, np.where(owner >= 0, Status.KEPT, Status.DROPPED))
    return replace(arrays, status=status[None].astype(np.int8), owner=owner[None].astype(np.int32),
                   pieces=pieces[None].astype(np.int32), scores=np.full((1, *arrays.grid), np.nan, np.float32),
                   num_tokens=np.array([int(owner.max()) + 1], dtype=np.int32), reduction_blocks=(0,))


def _frame(out, arrays, where) -> None:
    """In place: a white frame with a black line inside it around each patch of `where` ([rows, cols] bool)."""
    import numpy as np

    from retokviz.views import raster

    for row, col in zip(*np.nonzero(where)):
        cell = np.zeros(arrays.grid, dtype=np.int8)
        cell[row, col] = 1
        pixels = raster.upsample(arrays, cell) == 1
        outer = raster.group_edges(pixels.astype(np.int8), 2) & pixels
        inner = raster.group_edges(pixels.astype(np.int8), 3) & pixels & ~outer
        out[outer] = 1.0
        out[inner] = 0.0


def _step_picture(arrays, rounds, name: str, picked):
    """([H, W, 3] uint8, legend HTML) of step `name` at `rounds.block`."""
    import numpy as np

    from retokviz.explorer import panels
    from retokviz.views import palette, raster
    from retokviz.views.extract import to_uint8

    received = _received(arrays, rounds.block)
    carried = received >= 0
    token = np.where(carried, received, 0)
    group, kept, in_piece = _state(rounds, name)
    semantic = rounds.semantic[token] & carried
    displaced = np.zeros(arrays.grid, dtype=bool)
    grey = raster.greyed(arrays.picture) * _GREY[0] + _GREY[1]
    swatch_grey = palette.rgb_to_hex((0.75 * _GREY[0] + _GREY[1],) * 3)
    frame_entry = ("a semantic token a piece displaced (white frame)", "#ffffff", palette.OUTLINED)
    if name == "discard":
        out = raster.status_image(arrays, rounds.block).astype(np.float32) / 255.0
        displaced = (rounds.displaced[token] & carried)
        legend = panels.legend_html("status", raster.legend_keys(arrays, "status", rounds.block))
        entries = [frame_entry] if displaced.any() else []
        one = _one_block(arrays, arrays.owner[rounds.block], arrays.pieces[rounds.block])
    else:
        out = arrays.picture.copy()
        if kept is None:                           # candidates, a round: the candidates greyed
            dim = carried & ~semantic
        else:                                      # a re-scoring: what would be let go of now greyed
            dim = carried & ~kept[token]
            displaced = semantic & ~kept[token]
        pixels = raster.upsample(arrays, dim)
        out[pixels] = grey[pixels]
        shown_pieces = in_piece if kept is None else in_piece & kept
        pieces = np.where(carried & shown_pieces[token], group[token], -1)
        owner = np.where(carried, group[token], -1)
        one = _one_block(arrays, owner, pieces)
        raster.draw_pieces(out, one, 0, 0.55)
        raster.draw_dropped(out, arrays, ~carried)
        raster.draw_outline(out, arrays.mask)
        entries = [("semantic token, as it is" if kept is None else "kept, as it is", palette.KEPT_HEX, "")]
        if (pieces >= 0).any():
            entries += [("a piece (tinted, outlined; touching pieces in different colours)" if kept is None else
                         "a piece that entered the kept set", palette.PIECE_HEX[0], palette.TINTED)]
        entries.append(("candidate" if kept is None else "would be let go of now", swatch_grey, ""))
        if displaced.any():
            entries.append(frame_entry)
        if (~carried).any():
            entries.append(("let go of at an earlier block", palette.DROPPED_HEX, palette.DROPPED_HATCH))
        if arrays.mask is not None:
            entries.append(("the object's outline", palette.OUTLINE_HEX, palette.OUTLINED))
        legend, entries = _legend(entries), []
    _frame(out, arrays, displaced)
    if picked is not None:
        raster.mark_patch(out, one, 0, picked)
    if entries:
        legend += _legend(entries)
    if picked is not None:
        legend += _legend([("the patch followed", palette.LINEAGE_PATCH_HEX, palette.OUTLINED),
                           ("carried by the same token", palette.LINEAGE_HEX, palette.OUTLINED)])
    return to_uint8(out), legend


def _step_text(arrays, rounds, name: str, keep_rate: float, fuse: bool) -> str:
    """What step `name` did, in words and counts (numbers tagged for `ImagePieceLesson.shown`)."""
    import numpy as np

    from retokviz.trace.record import Status

    block, received, kept = rounds.block, rounds.received, rounds.kept
    candidates = received - kept
    if name == "candidates":
        body = (f"Block {block} receives {_n('received', received)} tokens. Ranked by the class token's attention, "
                f"the {_n('semantic', kept)} highest (ceil({keep_rate:.2f} × {received})) are <b>semantic</b>: they "
                f"stay as they are and never merge. The other {_n('candidates', candidates)} are the "
                "<b>candidates</b> (greyed), the only tokens that may merge.")
    elif name.startswith("round"):
        after = rounds.after[int(name.split()[-1]) - 1]
        similarity = after.similarity
        what = "candidates" if after.round == 1 else "non-semantic tokens (pieces and candidates left alone)"
        body = (f"The {_n('candidates', after.candidates)} {what} are split in two sets, "
                "alternately, and each token of one set finds its most similar token of the other (bipartite "
                f"matching, as ToMe does); the most alike pairs merge. {_n('merged', after.merged)} tokens merged "
                f"into another: {after.candidates} tokens became {_n('tokens', after.candidates - after.merged)}, "
                f"and {_n('pieces', after.num_pieces)} pieces of two or more of the tokens the block received are "
                "there now (each tinted and outlined, touching pieces in different colours)."
                + (f" The merged pairs' similarity: {similarity.min():.2f} to {similarity.max():.2f}."
                   if len(similarity) else "") + " Semantic tokens are never merged.")
    elif name.startswith("re-scoring"):
        after = rounds.after[int(name.split()[-1]) - 1]
        entering = np.unique(after.group[after.kept & after.pieces])
        displaced = int((rounds.semantic & ~after.kept).sum())
        body = (f"Re-scoring after round {after.round}: every token is scored again against the class query, a "
                "piece by the size-weighted mean of its members' keys plus the log of its size. "
                f"{_n('pieces kept', len(entering))} pieces now rank among the {_n('kept', kept)} best, so they "
                f"would be kept if the discard came now (still tinted); they displace {_n('displaced', displaced)} "
                "semantic tokens (white frames). What is greyed would be let go of. The next round merges the "
                "non-semantic tokens again.")
    else:
        final = rounds.after[-1] if rounds.after else None
        displaced = int(rounds.displaced.sum())
        pieces = 0 if final is None else len(np.unique(final.group[rounds.final_kept & final.pieces]))
        left = received - (0 if final is None else sum(after.merged for after in rounds.after))
        let_go = arrays.status[block] == Status.FUSED if fuse else arrays.owner[block] < 0
        gone = (_received(arrays, block) >= 0) & let_go
        where = ("fused into one token (paled under purple stripes)" if fuse else
                 "dropped (greyed under stripes)")
        body = ((f"After round {final.round} and a last re-scoring, the discard: " if final else
                 "Too few candidates to merge here; the discard: ")
                + f"the {_n('kept', kept)} best tokens stay, {_n('semantic kept', kept - displaced)} semantic tokens "
                f"as they are and {_n('pieces kept', pieces)} pieces, which displaced {_n('displaced', displaced)} "
                f"semantic tokens (white frames). The other {_n('let go', left - kept)} tokens, "
                f"{_n('patches let go', int(gone.sum()))} patches, are let go of: {where}. This is the explorer's "
                f"status view of block {block}: {int(arrays.num_tokens[block])} patch tokens leave it.")
    return (f'<div style="font-size:13px;line-height:1.45" data-step="{html.escape(name)}">'
            f'<b style="color:#d6336c">{html.escape(name)}</b> · {body}</div>')


def _steps_html(names: list[str], index: int) -> str:
    """The steps of the block in a row, the one shown in bold."""
    parts = [f'<b style="color:#d6336c">{html.escape(name)}</b>' if number == index else
             f'<span style="color:#888">{html.escape(name)}</span>' for number, name in enumerate(names)]
    return f'<div style="font-size:12px;margin-top:6px">steps: {" → ".join(parts)}</div>'


def _patch_story(arrays, rounds, names: list[str], index: int, patch: tuple[int, int]) -> str:
    """What happened to the token of `patch` at each step of the block, the step shown in bold."""
    row, col = patch
    token = int(_received(arrays, rounds.block)[row, col])
    head = f'<b>patch (row {row}, col {col})</b>'
    if token < 0:
        return (f'<div style="font-size:12px;margin-top:6px">{head}: let go of before block {rounds.block}, so '
                'this block never sees it</div>')
    rank = int((rounds.scores > rounds.scores[token]).sum()) + 1
    lines = [f"token {token} of {rounds.received}, rank {rank} by class attention: "
             + ("semantic" if rounds.semantic[token] else "a candidate")]
    for name in names[1:]:
        group, kept, in_piece = _state(rounds, name)
        size = int((group == group[token]).sum())
        if name == "discard":
            text = ("kept" if rounds.final_kept[token] else "let go of") + (
                f", in a piece of {size} tokens" if in_piece[token] else "")
        elif kept is None:
            text = f"in a piece of {size} tokens" if in_piece[token] else "alone"
        else:
            text = "would be kept" if kept[token] else "would be let go of"
        lines.append(f"{name}: {text}")
    items = "".join(f"<li>{'<b>' + line + '</b>' if number == index else line}</li>"
                    for number, line in enumerate(lines))
    return (f'<div style="font-size:12px;line-height:1.4;margin-top:6px">{head}<ul style="margin:2px 0 0 0;'
            f'padding-left:18px">{items}</ul></div>')


def imagepiece_lesson(model: Any = None, images: Any = None, masks: Any = None, *, keep_rate: float | None = None,
                      block: int | None = None, step: int | str = 0, image: int = 0, labels: Any = None,
                      class_names: list[str] | None = None, num_images: int = LESSON_IMAGES,
                      threads: int | None = THREADS) -> ImagePieceLesson:
    """ImagePiece's merge rounds at one reduction block, one step at a time (notebook 03).

    Args:
        model: None (the bundled checkpoint trained with ImagePiece, on generated test images with their masks), or
            what `rv.explore` takes (one model with a class token).
        keep_rate: 0.1..0.95 (default: the model's own ImagePiece keep rate, else 0.7).
        block: a block where ImagePiece reduces (default: the first).
        step: the first step shown, an index or a name ("candidates", "round 1", "re-scoring 1", ..., "discard").
        images, masks, labels, class_names, num_images, threads, image: as `evit_lesson` takes them.

    Raises:
        ValueError: a keep rate, block, step or image out of range, before anything is drawn.
    """
    if keep_rate is not None:
        check_keep_rate(keep_rate, IMAGEPIECE_RATES)
    session, name = _session(model, bundled_name("ImagePiece"), images, masks, labels, class_names, num_images,
                             threads)
    return ImagePieceLesson(session, name, keep_rate=keep_rate, block=block, step=step, image=image)
