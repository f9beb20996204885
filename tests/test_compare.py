"""rv.compare and the tutorial's lesson widgets, driven headless on a tiny model: controls set in code, as a browser
would set them."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

import retokviz as rv
from conftest import tiny_vit
from retokviz.explorer.compare import Compare, compare
from retokviz.methods.compose import token_counts

pytest.importorskip("ipywidgets")

METHODS = ("evit", "imagepiece", "tome")


def _inputs(count: int = 2):
    torch.manual_seed(0)
    images = torch.randn(count, 3, 96, 96)
    masks = torch.zeros(count, 96, 96, dtype=torch.bool)
    masks[:, 32:80, 24:64] = True
    return images, masks


@pytest.fixture(scope="module")
def board() -> Compare:
    """Three methods on a tiny DeiT of 4 blocks and a 6 x 6 patch grid, two images with masks."""
    images, masks = _inputs()
    return compare(tiny_vit("deit", depth=4, grid=6), images, masks, keep_rate=0.7)


class Passes:
    """Counts forward passes of a model (a forward hook)."""

    def __init__(self, model) -> None:
        self.count = 0
        self.handle = model.register_forward_hook(self.seen)

    def seen(self, module, args, output) -> None:
        self.count += 1

    def __enter__(self) -> "Passes":
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def pictures(board) -> list[bytes]:
    return [bytes(column.picture.value) for column in board.columns]


def controls(board) -> dict:
    return {name: getattr(board, name).value for name in ("keep_rate", "block", "view", "image")}


def test_one_column_per_method_sharing_one_keep_rate_slider_and_one_block_slider(board):
    import ipywidgets as w

    assert board.methods == METHODS and [c.title.value.count(label) for c, label in
                                         zip(board.columns, ("EViT", "ImagePiece", "ToMe"))] == [1, 1, 1]

    def widgets(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from widgets(child)

    everything = list(widgets(board.root))
    assert sum(isinstance(x, w.FloatSlider) for x in everything) == 1           # one keep-rate slider
    assert sum(isinstance(x, w.IntSlider) for x in everything) == 1             # one block slider
    board.set(keep_rate=0.5, block=1, view="status", image=0)
    for method, column, run in zip(METHODS, board.columns, board.runs):
        assert column.shown()["block"] == 1 and column.run is run
        assert run.method == rv.method_at(method, board.model, keep_rate=0.5)    # every column at the one keep rate
        assert run is board.session.run(board.model_name, 0, method, 0.5)
        assert column.shown()["tokens"] == run.trace.layers[1].num_tokens
    board.block.value = 3                                                       # dragged: every column follows
    assert [column.shown()["block"] for column in board.columns] == [3, 3, 3]


def test_moving_the_keep_rate_slider_changes_every_picture(board):
    board.set(keep_rate=0.7, block=3, view="status", image=0)
    before, tokens = pictures(board), [c.shown()["tokens"] for c in board.columns]
    board.keep_rate.value = 0.4
    after = pictures(board)
    assert all(a != b for a, b in zip(after, before))
    assert all(a.startswith(b"\x89PNG") for a in after)
    assert all(c.shown()["tokens"] < t for c, t in zip(board.columns, tokens))
    board.view.value = "pieces"                                                 # the view too, for every column
    assert all(a != b for a, b in zip(pictures(board), after))


def test_pictures_are_one_size_with_a_legend_of_what_they_hold(board):
    board.set(keep_rate=0.5, block=3, view="status")
    assert len({(c.picture.layout.width, c.picture.layout.height) for c in board.columns}) == 1
    evit, imagepiece, tome = (c.legend.value for c in board.columns)
    assert "fused" in evit and "dropped" not in evit
    assert "dropped" in imagepiece and "fused" not in imagepiece
    assert "merged" in tome and "fused" not in tome and "dropped" not in tome
    assert all("untouched model" in c.prediction.value for c in board.columns)


@pytest.mark.parametrize("keep_rate", [0.3, 0.5, 0.7, 1.0])
def test_an_equal_token_budget_at_the_last_block(board, keep_rate):
    board.set(keep_rate=keep_rate)
    depth, patches = len(board.model.blocks), board.model.patch_embed.num_patches
    evit, imagepiece, tome = (c.shown()["tokens"] for c in board.columns)
    last = [run.trace.layers[-1].num_tokens for run in board.runs]
    assert board.columns[0].shown()["block"] == depth - 1 and [evit, imagepiece, tome] == last
    assert evit == tome == board.budget == token_counts(rv.EViT(keep_rate=keep_rate), depth, patches)[-1]
    # ImagePiece gets the same keep rate: each reduction block keeps EViT's K = ceil(k * T), without the fused
    # token EViT adds on top, so it ends at most one token per reduction below EViT's budget
    reductions = rv.EViT(keep_rate=keep_rate).reduction_layers(depth)
    first = reductions[0]
    ip_trace, evit_trace = board.runs[1].trace, board.runs[0].trace
    assert ip_trace.layers[first].num_tokens == math.ceil(keep_rate * patches - 1e-9)
    assert evit_trace.layers[first].num_tokens == ip_trace.layers[first].num_tokens + (keep_rate < 1)
    assert evit - len(reductions) <= imagepiece <= evit


CONTROLS = ("keep_rate", "block", "view", "image")


@pytest.mark.parametrize("arguments, named", [
    ({"keep_rate": 1.5}, "1.5"),
    ({"keep_rate": True}, "True"),
    ({"keep_rate": "0.5"}, "'0.5'"),
    ({"keep_rate": float("nan")}, "nan"),
    ({"keep_rate": 0.5, "block": 4}, "0..3"),
    ({"block": True}, "True"),
    ({"keep_rate": 0.4, "view": "heat"}, "'heat'"),
    ({"view": "pieces", "image": 2}, "0..1"),
    ({"block": 1, "image": 1.0}, "1.0"),
], ids=repr)
def test_a_refused_set_changes_nothing_and_names_the_bad_value(board, arguments, named):
    board.set(keep_rate=0.7, block=2, view="status", image=0)
    before, shown, passes = controls(board), pictures(board), board.session.forward_passes
    with pytest.raises(ValueError, match=re.escape(named)):
        board.set(**arguments)
    assert controls(board) == before and pictures(board) == shown
    assert board.session.forward_passes == passes


@pytest.mark.parametrize("methods, named", [
    (("evit",), "two or three"),
    ("evit", "sequence"),
    (("evit", "imagepiece", "tome", "imagepiece+tome"), "two or three"),
    (("evit", "nosuchmethod"), "'nosuchmethod'"),
    (("evit", "EViT"), "different"),
], ids=repr)
def test_bad_methods_are_refused_before_anything_is_drawn(methods, named):
    model = tiny_vit("deit", depth=2, grid=4)
    with Passes(model) as passes, pytest.raises(ValueError, match=re.escape(named)):
        compare(model, torch.randn(1, 3, 64, 64), methods=methods)
    assert passes.count == 0


def test_a_method_the_model_cannot_run_is_refused_before_anything_is_drawn():
    model = tiny_vit("deit", depth=2, grid=4, class_token=False, global_pool="avg")
    with Passes(model) as passes, pytest.raises(ValueError, match="'evit' can't run on this model.*'tome'"):
        compare(model, torch.randn(1, 3, 64, 64), methods=("tome", "evit"))
    assert passes.count == 0
    with pytest.raises(ValueError, match="keep_rate"):
        compare(model, torch.randn(1, 3, 64, 64), methods=("tome", "imagepiece"), keep_rate=0)


def test_labels_are_taken_and_two_methods_make_two_columns():
    images, masks = _inputs(1)
    two = compare(tiny_vit("deit", depth=3, grid=6), images, masks, methods=("ToMe", "ImagePiece + ToMe"),
                  view="pieces", block=1)
    assert two.methods == ("tome", "imagepiece+tome") and len(two.columns) == 2
    assert two.grid.layout.grid_template_columns.startswith("repeat(2,")
    assert [c.shown()["block"] for c in two.columns] == [1, 1] and two.view.value == "pieces"


def test_every_control_says_what_it_does():
    images, masks = _inputs(1)
    two = compare(tiny_vit("deit", depth=2, grid=6), images, masks, methods=("evit", "tome"))
    for control in (two.keep_rate, two.block, two.image):
        assert control.tooltip and len(control.tooltip.split()) >= 5, control
    assert len(two.view.tooltips) == len(two.view.options) and all(two.view.tooltips)


def page_data(text: str) -> dict:
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.DOTALL)
    return json.loads(found.group(1))


def test_the_saved_page_holds_one_frame_set_per_method(board, tmp_path):
    board.set(keep_rate=0.5, block=2, view="pieces", image=1)
    rates = (0.4, 0.7, 1.0)
    path = board.save_html(tmp_path / "deep" / "compare.html", keep_rates=rates)
    text = path.read_text(encoding="utf-8")
    data = page_data(text)
    blocks = len(board.model.blocks)
    assert [column["label"] for column in data["columns"]] == ["EViT", "ImagePiece", "ToMe"]
    assert data["keep_rates"] == list(rates) and data["num_blocks"] == blocks
    assert data["views"] == ["status", "pieces", "attention", "removed"]
    assert data["start"] == {"view": "pieces", "block": 2, "keep_rate": 0.5}
    depth, patches = blocks, board.model.patch_embed.num_patches
    assert data["budgets"] == [token_counts(rv.EViT(keep_rate=k), depth, patches)[-1] for k in rates]
    for method, column in zip(METHODS, data["columns"]):
        assert len(column["settings"]) == len(rates)                        # one frame set per method and rate
        for rate, setting in zip(rates, column["settings"]):
            run = board.session.run(board.model_name, 1, method, rate)
            assert setting["num_tokens"] == run.arrays.num_tokens.tolist() and setting["method"] == run.arrays.method
            for view in data["views"]:
                assert len(setting["frames"][view]) == len(setting["legends"][view]) == blocks
                assert all(0 <= i < len(data["images"]) for i in setting["frames"][view])
                assert all(0 <= i < len(data["snippets"]) for i in setting["legends"][view])
            assert len(setting["charts"]) == blocks and "<svg" in data["snippets"][setting["charts"][0]]
            assert "untouched model" in data["snippets"][setting["prediction"]]
    assert all(image.startswith("data:image/png;base64,") for image in data["images"])
    frames = {column["label"]: column["settings"][0]["frames"]["status"][-1] for column in data["columns"]}
    assert len(set(frames.values())) == 3                                   # three different pictures
    assert text.startswith("<!DOCTYPE html>") and "<script src" not in text and "http" not in text.split("id=\"data\"")[0]
    with pytest.raises(ValueError, match="keep_rate"):
        board.save_html(tmp_path / "bad.html", keep_rates=(0.5, 2.0))
    assert not (tmp_path / "bad.html").exists()


def test_rv_compare_is_lazy_and_public():
    assert "compare" in rv.__all__ and callable(rv.compare)
    import subprocess
    import sys

    code = "import sys, retokviz as rv; rv.compare; sys.exit('ipywidgets' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# --- the lesson widgets, built the same way ----------------------------------------------------------------

def test_the_evit_lesson_shows_what_its_trace_says():
    from retokviz.tutorial import widgets

    images, masks = _inputs(1)
    lesson = widgets.evit_lesson(tiny_vit("deit", depth=4, grid=6), images, masks)
    lesson.set(keep_rate=0.5)
    assert lesson.shown() == {"block": 3, "tokens": lesson.trace.layers[3].num_tokens, "patches": 36}
    assert "fused" in lesson.column.legend.value and "untouched model" in lesson.column.prediction.value
    before = bytes(lesson.column.picture.value)
    lesson.block.value = 0                                  # dragged
    assert lesson.shown()["block"] == 0 and bytes(lesson.column.picture.value) != before
    with pytest.raises(ValueError, match="1.5"):
        lesson.set(keep_rate=0.3, block=1.5)
    assert lesson.keep_rate.value == 0.5 and lesson.block.value == 0
    assert lesson.keep_rate.tooltip and lesson.block.tooltip


def test_the_tome_lesson_follows_r_and_its_order():
    from retokviz.tutorial import widgets

    images, masks = _inputs(1)
    lesson = widgets.tome_lesson(tiny_vit("deit", depth=4, grid=6), images, masks, r=2)
    assert lesson.method == rv.ToMe(r=2) and lesson.view.value == "pieces" and lesson.max_r == 9
    assert lesson.shown()["tokens"] == 36 - 4 * 2 == lesson.trace.layers[-1].num_tokens
    before = bytes(lesson.column.picture.value)
    lesson.set(order="spatial")                             # other pairs merge, as many of them
    assert lesson.run.method.order == "spatial" and lesson.shown()["tokens"] == 28
    assert bytes(lesson.column.picture.value) != before
    lesson.r.value = 4                                      # dragged
    assert lesson.shown()["tokens"] == lesson.trace.layers[-1].num_tokens == 36 - 4 * 4
    before = lesson.runs[0].prediction.top
    lesson.set(proportional=False)                          # the same tokens, attended once each
    assert lesson.run.method == rv.ToMe(r=4, order="spatial", proportional=False)
    assert lesson.shown()["tokens"] == 36 - 4 * 4 and lesson.runs[0].prediction.top != before
    for arguments in ({"r": 10}, {"r": 3, "order": "random"}, {"view": "attention"}, {"r": 3, "proportional": 1}):
        with pytest.raises(ValueError):
            lesson.set(**arguments)
    assert (lesson.r.value, lesson.order.value, lesson.view.value, lesson.proportional.value) == (
        4, "spatial", "pieces", False)
    assert all(lesson.order.tooltips) and lesson.r.tooltip and lesson.proportional.tooltip
