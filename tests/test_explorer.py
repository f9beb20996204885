"""The explorer widget, driven headless: control values set in code, as a browser would set them."""
from __future__ import annotations

import datetime
import html
import io
import re
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import retokviz as rv
from retokviz.explorer import explore
from conftest import tiny_vit
from retokviz.explorer.widget import REAL_MODEL

pytest.importorskip("ipywidgets")

METHODS = ("evit", "imagepiece", "tome", "imagepiece+tome")
VIEWS = ("status", "pieces", "attention", "removed")


@pytest.fixture(scope="module")
def ex():
    """The offline explorer: every bundled checkpoint, four generated test images with masks."""
    return explore(num_images=4)


class Passes:
    """Counts forward passes of every model of an explorer (a forward hook on each)."""

    def __init__(self, explorer) -> None:
        self.count = 0
        self.handles = [model.register_forward_hook(self.seen) for model in explorer.session.models.values()]

    def seen(self, module, args, output) -> None:
        self.count += 1

    def __enter__(self) -> "Passes":
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


def test_importing_the_explorer_leaves_ipywidgets_and_plotly_unloaded():
    code = ("import sys, retokviz, retokviz.explorer, retokviz.views.html; "
            "assert not {'ipywidgets', 'plotly'} & set(sys.modules), sorted({'ipywidgets', 'plotly'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_offline_default_offers_the_showcase_checkpoints_every_method_and_view(ex):
    offered = [value for _, value in ex.checkpoint.options]
    assert offered == [*rv.bundled.checkpoints("showcase").values(), REAL_MODEL]   # and a real model, last
    assert [value for _, value in ex.method.options] == list(METHODS)
    assert [label for label, _ in ex.method.options] == ["EViT", "ImagePiece", "ToMe", "ImagePiece + ToMe"]
    assert [value for _, value in ex.view.options] == list(VIEWS)
    assert "removed background" in [label for label, _ in ex.view.options]
    assert ex.block.max == len(ex.model.blocks) - 1 and ex.play.max == ex.block.max
    assert ex.session.gallery.entries[0].mask is not None     # generated test images come with their masks
    assert ex._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.root.model_id


def test_the_real_model_without_weights_says_why_and_how_and_the_picker_goes_back(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-retokviz-test")      # no cached weights either
    explorer = explore(num_images=2)
    shown, images, block = explorer.checkpoint.value, len(explorer.image.options), explorer.block.value
    from retokviz.models.weights import WeightsUnavailable

    with pytest.raises(WeightsUnavailable):
        explorer.set(model=REAL_MODEL, block=block - 1)
    assert explorer.checkpoint.value == shown and explorer.block.value == block   # a refused set changed nothing
    explorer.checkpoint.value = REAL_MODEL                                   # as a reader picks it
    assert explorer.checkpoint.value == shown and len(explorer.image.options) == images
    note = html.unescape(explorer.message.value)
    assert REAL_MODEL in note and "can't be shown here" in note and "weights=" in note


def test_the_real_model_once_its_weights_are_had_shows_photographs_with_imagenet_classes(monkeypatch):
    import retokviz.models.weights as weights

    def fake_pretrained(name, weights_file=None, **kwargs):
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=64, num_classes=1000)
        return model.eval(), "a test's random weights"

    monkeypatch.setattr(weights, "load_pretrained", fake_pretrained)
    explorer = explore(num_images=2)
    explorer.set(model=REAL_MODEL, image=2, block=1)
    assert explorer.model.num_classes == 1000 and explorer.block.max == 1
    assert [label for label, _ in explorer.image.options][2:] == [f"{i}: {p}" for i, p in
                                                                    enumerate(rv.data.PHOTOS, start=2)]
    assert explorer.session.class_names[REAL_MODEL][0].startswith("tench")     # ImageNet's class names
    assert "knows 1000 classes (tench" in explorer.prediction.value           # a photograph has no label
    assert len(explorer.picture.png) > 1000


@pytest.mark.parametrize("checkpoint", sorted(rv.bundled.checkpoints("showcase").values()))
def test_every_checkpoint_and_method_draws_every_view_and_block(ex, checkpoint):
    ex.set(model=checkpoint)
    for method in METHODS:
        ex.set(method=method, keep_rate=0.5)
        trace = ex.trace
        assert isinstance(trace, rv.Trace) and len(trace.layers) == len(ex.model.blocks)
        assert ex.run.tokens == trace.layers[-1].num_tokens < trace.num_patches
        for view in VIEWS:
            for block in range(ex.block.max + 1):
                ex.set(view=view, block=block)
                assert bytes(ex.picture.value).startswith(b"\x89PNG"), (method, view, block)
                assert f"after block {block}:" in ex.tokens.value
        assert "untouched model" in ex.prediction.value and "MACs" in ex.prediction.value


def test_choosing_a_checkpoint_selects_the_method_it_was_trained_with(ex):
    ex.set(model="showcase-baseline", method="imagepiece+tome")
    for checkpoint, method in (("showcase-tome", "tome"), ("showcase-imagepiece-0.7-stem", "imagepiece"),
                               ("showcase-evit-0.7", "evit")):
        ex.checkpoint.value = checkpoint
        assert ex.method.value == method
    ex.set(model="showcase-tome", method="evit")     # a method set with the model wins
    assert ex.method.value == "evit"


def test_layer_view_and_patch_changes_run_no_forward_pass(ex):
    ex.set(model="showcase-evit-0.7", method="evit", keep_rate=0.6, patch=None)
    with Passes(ex) as passes:
        for view in VIEWS:
            for block in range(ex.block.max + 1):
                ex.view.value = view
                ex.block.value = block
        ex.set(patch=(2, 5))
        ex.patch_row.value = 4
        ex.follow.value = False
        assert passes.count == 0
        ex.keep_rate.value = 0.45                   # a new setting: one recorded pass (and one MAC count)
        assert 1 <= passes.count <= 2
        seen = passes.count
        ex.keep_rate.value = 0.6                    # back to a cached setting: none
        ex.method.value = "evit"
        assert passes.count == seen


def test_tokens_and_trace_change_with_the_keep_rate_for_every_method(ex):
    ex.set(model="showcase-baseline")
    for method in METHODS:
        ex.set(method=method)
        tokens, traces = [], []
        for rate in (1.0, 0.7, 0.4):
            ex.keep_rate.value = rate
            tokens.append(ex.run.tokens)
            traces.append(ex.trace)
        assert tokens[0] > tokens[1] > tokens[2], (method, tokens)
        assert traces[0] is not traces[1] and traces[1] is not traces[2]
        assert ex.run.macs < ex.session.untouched(ex.checkpoint.value, ex.image.value)[1]


def test_tome_follows_the_keep_rate_through_method_at(ex):
    ex.set(model="showcase-tome", method="tome", keep_rate=0.5)
    expected = rv.method_at(rv.method_of(ex.model), ex.model, keep_rate=0.5)
    assert ex.run.method == expected
    ex.set(method="evit")
    evit_tokens = ex.run.tokens
    ex.set(method="tome")
    assert ex.run.tokens == evit_tokens            # an equal token budget


def test_prediction_beside_the_untouched_model(ex):
    ex.set(model="showcase-evit-0.7", method="evit", keep_rate=0.7, image=0)
    untouched, macs = ex.session.untouched(ex.checkpoint.value, 0)
    assert len(ex.run.prediction.top) == len(untouched.top) == 3
    html = ex.prediction.value
    assert html.count("<tr>") == 6 and "true class" in html
    assert f"{ex.run.tokens}</b> of 144" in html and f"{macs / 1e6:.1f} M" in html


def test_following_a_patch_lists_its_lineage(ex):
    ex.set(model="showcase-imagepiece-0.7-stem", method="imagepiece", keep_rate=0.5, patch=(3, 4))
    assert ex.patch == (3, 4)
    assert ex.lineage.value.count("<li>") == len(ex.model.blocks) and "row 3, col 4" in ex.lineage.value
    ex.set(patch=None)
    assert ex.patch is None and ex.lineage.value == ""


def _png(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_uploaded_picture_of_another_size_is_prepared_and_shown():
    ex = explore(num_images=2)
    data = _png(150, 200)
    ex.upload.value = ({"name": "mine.png", "type": "image/png", "size": len(data), "content": memoryview(data),
                        "last_modified": datetime.datetime.now()},)
    assert ex.image.value == 2 and ex.image.options[-1] == ("2: mine.png", 2)
    assert ex.run.arrays.picture.shape == (192, 192, 3)
    assert "your picture is 200 x 150 px: enlarged 1.3x so its shorter side is 192 px, then centre-cropped to " \
        "192 x 192 (the sides cut off)" in ex.message.value                 # how it was made to fit, said
    assert "this model knows only 10 classes: 0, 1, 2" in ex.prediction.value   # what a digit model can answer
    ex.view.value = "removed"                        # no mask for it: drawn in one colour, and why said in words
    assert "no object outline" in ex.legend.value and "let go of (no object outline" in ex.legend.value
    assert "mask=" not in ex.legend.value                                   # no API advice to a reader
    ex.upload.value = ({"name": "bad.png", "type": "image/png", "size": 3, "content": memoryview(b"abc"),
                        "last_modified": datetime.datetime.now()},)
    assert "could not read bad.png" in ex.message.value and ex.image.value == 2


def test_any_timm_vit_with_images_of_another_size_is_resized():
    model = tiny_vit("deit", depth=3, grid=4)              # 64 x 64 images
    images = torch.randn(2, 3, 80, 96)
    masks = torch.zeros(2, 80, 96, dtype=torch.bool)
    masks[:, 20:60, 30:70] = True
    ex = explore(model, images, masks)
    assert ex.run.arrays.picture.shape == (64, 64, 3) and ex.run.arrays.mask.shape == (64, 64)
    assert ex.run.arrays.mask.any()
    ex.set(view="removed", method="tome", keep_rate=0.5)
    assert bytes(ex.picture.value).startswith(b"\x89PNG") and "let go of" in ex.legend.value
    assert ex.prediction.value.count("class ") >= 6          # no class names known: "class i"


def test_a_model_without_a_class_token_gets_only_tome():
    model = tiny_vit("deit", depth=2, grid=4, class_token=False, global_pool="avg")
    ex = explore(model, torch.randn(1, 3, 64, 64))
    assert [value for _, value in ex.method.options] == ["tome"]


def test_an_unsupported_model_is_refused_before_anything_is_drawn():
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=10)
    with pytest.raises(rv.UnsupportedModelError, match="ResNet"):
        explore(resnet, torch.randn(1, 3, 64, 64))
    with pytest.raises(rv.UnsupportedModelError):
        explore("resnet18")


@pytest.mark.parametrize("shape", [(3, 64, 64), (2, 1, 64, 64), (2, 64, 64, 3), (0, 3, 64, 64)])
def test_images_of_the_wrong_shape_are_refused_naming_the_expected_one(shape):
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        explore(tiny_vit("deit", depth=2, grid=4), torch.zeros(shape))


def test_masks_that_do_not_match_the_images_are_refused():
    with pytest.raises(ValueError, match=r"masks must be \[N, H, W\]"):
        explore(tiny_vit("deit", depth=2, grid=4), torch.zeros(2, 3, 64, 64), torch.zeros(2, 32, 32))


def test_unknown_names_list_the_valid_ones(ex):
    with pytest.raises(ValueError, match="status.*pieces.*attention.*removed"):
        ex.set(view="heat")
    with pytest.raises(ValueError, match="evit.*imagepiece.*tome.*imagepiece\\+tome"):
        ex.set(method="dynamicvit")
    with pytest.raises(ValueError, match="showcase-baseline"):
        ex.set(model="nope")
    with pytest.raises(ValueError, match="keep_rate"):
        ex.set(keep_rate=1.5)
    with pytest.raises(ValueError, match="evit"):
        explore(num_images=1, method="nope")
    with pytest.raises(ValueError, match="neither a bundled checkpoint"):
        explore("no-such-model-anywhere")
    ex.set(view="removed background", method="ToMe")          # labels work as well as values
    assert (ex.view.value, ex.method.value) == ("removed", "tome")


def test_the_cache_is_bounded_and_keyed_by_setting(ex):
    session = ex.session
    before = session.forward_passes
    first = session.run("showcase-evit-0.7", 1, "evit", 0.35)
    assert session.run("showcase-evit-0.7", 1, "evit", 0.35000000001) is first
    assert session.forward_passes == before + 2            # one pass, one MAC count
    session.cache_size = 2
    for rate in (0.8, 0.85, 0.9):
        session.run("showcase-evit-0.7", 1, "evit", rate)
    assert not session.cached("showcase-evit-0.7", 1, "evit", 0.35)
    session.cache_size = 128


def _table_rows(path) -> list[dict]:
    """The sweep table as csv.DictReader reads it: text, untyped (independent of retokviz's reader)."""
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_offline_explorer_reads_the_committed_sweep_table(ex):
    path = rv.bundled.sweep_table("showcase")
    assert path is not None and path.name == "sweep-cpu-showcase.csv"
    assert ex.tradeoff is not None and ex.tradeoff_panel.get_title(0) == f"measured trade-off ({path.name})"
    raw = {(row["method"], float(row["keep_rate"])): row for row in _table_rows(path)
           if row["batch_size"] == "64" and row["model"] == "showcase-baseline"}
    for method, rate in (("evit", 0.7), ("imagepiece", 0.5), ("tome", 0.6)):
        ex.set(model="showcase-baseline", method=method, keep_rate=rate)
        row, base = raw[(method, rate)], raw[("none", 1.0)]
        text = ex.measured.value
        assert f"at keep {rate:g}: <b>{float(row['speedup']):.2f}x</b>" in text, text
        assert f"MACs ceiling {float(row['macs_ceiling']):.2f}x" in text
        assert f"top-1 {float(row['accuracy']):.1%} (untouched {float(base['accuracy']):.1%})" in text
        assert f"latency {float(row['latency_ms']):.1f} ms" in text and "nearest" not in text
    ex.set(method="evit", keep_rate=0.1)                     # below the table's rates: its nearest, said so
    assert "at keep 0.2:" in ex.measured.value and "the slider is at 0.10" in ex.measured.value
    ex.set(method="imagepiece+tome")
    assert "is not in this sweep table" in ex.measured.value


def test_the_tradeoff_panel_rings_the_setting_shown_once_opened(ex):
    ex.set(model="showcase-evit-0.7", method="evit", keep_rate=0.7)
    ex.tradeoff_panel.selected_index = None
    ex.tradeoff_panel.selected_index = 0                   # opening it draws it, ringing the setting shown
    assert ex.tradeoff.marked == ("evit", 0.7) and bytes(ex.tradeoff.picture.value).startswith(b"\x89PNG")
    first = bytes(ex.tradeoff.picture.value)
    ex.keep_rate.value = 0.5
    assert ex.tradeoff.marked == ("evit", 0.5) and bytes(ex.tradeoff.picture.value) != first
    redraws = []
    redraw = ex.tradeoff._redraw
    ex.tradeoff._redraw = lambda: (redraws.append(ex.tradeoff.marked), redraw())
    try:
        ex.keep_rate.value = 0.45                          # the same swept row (0.5) stays ringed: no redraw
        assert ex.tradeoff.marked == ("evit", 0.45) and redraws == []
        ex.keep_rate.value = 0.6                           # another row: redrawn
        assert redraws == [("evit", 0.6)]
    finally:
        del ex.tradeoff._redraw
    ex.tradeoff_panel.selected_index = None
    ex.keep_rate.value = 0.7                               # closed: not redrawn
    assert ex.tradeoff.marked == ("evit", 0.6)


def test_a_tradeoff_table_is_checked_before_anything_is_drawn(tmp_path):
    model = tiny_vit("deit", depth=2, grid=4)
    images = torch.randn(1, 3, 64, 64)
    assert explore(model, images).tradeoff is None          # "auto" for a model of no bundled set: none
    with pytest.raises(FileNotFoundError, match="no sweep table at .*missing.csv"):
        explore(model, images, tradeoff=tmp_path / "missing.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        explore(model, images, tradeoff=tmp_path / "other.csv")
    assert explore(num_images=1, tradeoff=None).tradeoff is None
    given = explore(model, images, method="evit", keep_rate=0.7, tradeoff=rv.bundled.sweep_table("showcase"))
    assert "EViT at keep 0.7" in given.measured.value and "showcase-baseline" in given.measured.value


CONTROLS = ("checkpoint", "method", "keep_rate", "block", "view", "image", "follow", "patch_row", "patch_col")


@pytest.mark.parametrize("arguments, named", [
    ({"method": "tome", "view": "bogus"}, "'bogus'"),
    ({"model": "showcase-tome", "keep_rate": True}, "True"),
    ({"keep_rate": True}, "True"),
    ({"keep_rate": "0.5"}, "'0.5'"),
    ({"keep_rate": float("nan")}, "nan"),
    ({"method": "imagepiece", "keep_rate": 0.05}, "0.05"),
    ({"method": "tome", "block": True}, "True"),
    ({"model": "showcase-evit-0.7", "block": 99}, "99"),
    ({"view": "pieces", "image": 1.0}, "1.0"),
    ({"keep_rate": 0.3, "image": -1}, "-1"),
    ({"method": "evit", "patch": (0, 99)}, "99"),
    ({"block": 0, "patch": (True, 0)}, "True"),
    ({"view": "pieces", "patch": "3, 4"}, "'3, 4'"),
    ({"model": "showcase-tome", "method": "dynamicvit"}, "'dynamicvit'"),
], ids=repr)
def test_a_refused_set_changes_no_control_and_names_the_bad_value(ex, arguments, named):
    ex.set(model="showcase-baseline", method="evit", keep_rate=0.7, view="status", block=1, image=0, patch=(1, 2))
    before = {name: getattr(ex, name).value for name in CONTROLS}
    picture, title = bytes(ex.picture.value), ex.title.value
    with pytest.raises(ValueError, match=re.escape(named)):
        ex.set(**arguments)
    assert {name: getattr(ex, name).value for name in CONTROLS} == before
    assert bytes(ex.picture.value) == picture and ex.title.value == title


def test_the_saved_page_of_the_dynamicvit_checkpoint_holds_its_learned_scores(ex, tmp_path):
    ex.set(model=rv.bundled.name("DynamicViT"), method="dynamicvit", view="attention", patch=None)
    page = (tmp_path / "dynamicvit.html")
    ex.save_html(page)
    text = html.unescape(page.read_text())
    assert "DynamicViT" in text and "learned keep score" in text


def test_the_dynamicvit_checkpoint_shows_its_learned_scores_and_keeps_its_predictors(ex):
    name = rv.bundled.name("DynamicViT")
    ex.set(model=name)
    assert ex.method.value == "dynamicvit"                                   # the method it was trained with
    assert "dynamicvit" not in dict((v, v) for _, v in ex.set(model=rv.bundled.name("none")).method.options)
    ex.set(model=name, method="dynamicvit", view="attention", block=1, patch=None)
    labels = dict((value, label) for label, value in ex.view.options)
    assert labels["attention"] == "learned scores" and ex.view.value == "attention"
    assert "learned keep score" in html.unescape(ex.legend.value) and "class attention" not in ex.legend.value
    before = bytes(ex.picture.value)
    ex.set(method="evit")                                                    # EViT on the same model: attention
    assert dict((value, label) for label, value in ex.view.options)["attention"] == "attention"
    assert "class attention" in ex.legend.value and ex.view.value == "attention"
    ex.set(method="dynamicvit")
    assert bytes(ex.picture.value) == before                                 # the trained predictors, unchanged
