"""Preparing images and drawing traces, benchmarks and evaluations: figures that show themselves in IPython and
leave matplotlib's global state alone."""
from __future__ import annotations

from contextlib import contextmanager

import matplotlib
import matplotlib.figure
import numpy as np
import pytest
import torch
from PIL import Image

import retokviz as rv
from retokviz.views import figure as render
from retokviz.images import prepare
from retokviz.views import extract, palette, static
from conftest import load_script
from conftest import tiny_vit

PNG = b"\x89PNG"


@contextmanager
def plotting_state_kept(monkeypatch):
    """Fails the test if the code inside chooses a matplotlib backend or changes an rcParam."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a library function called matplotlib.use{args}: global plotting state")

    monkeypatch.setattr(matplotlib, "use", refuse)
    before = dict(dict.items(matplotlib.rcParams))        # the stored values, without resolving the backend
    yield
    after = dict(dict.items(matplotlib.rcParams))
    assert after == before, {key: (before[key], after[key]) for key in before if before[key] != after[key]}


def test_prepare_crops_normalises_and_accepts_arrays_images_and_paths(tmp_path):
    model = tiny_vit(grid=4)                                # 64 px input
    array = np.zeros((80, 120, 3), dtype=np.uint8)
    array[:, :60] = 255                                     # left half white
    tensor, picture = prepare(array, model)
    assert tensor.shape == (1, 3, 64, 64) and picture.shape == (64, 64, 3)
    assert picture.min() >= 0 and picture.max() <= 1
    mean, std = np.array(model.pretrained_cfg["mean"]), np.array(model.pretrained_cfg["std"])
    np.testing.assert_allclose(tensor[0, :, 32, 5].numpy(), (1 - mean) / std, rtol=1e-5)   # white, normalised
    Image.fromarray(array).save(tmp_path / "a.png")
    from_path, _ = prepare(tmp_path / "a.png", model)
    from_float, _ = prepare(array / 255.0, model)
    assert torch.allclose(from_path, tensor) and torch.allclose(from_float, tensor)
    with pytest.raises(ValueError, match=r"\[H, W, 3\].*got shape \(8, 8, 2\)"):
        prepare(np.zeros((8, 8, 2)), model)


@pytest.fixture
def recorded():
    model = rv.apply(tiny_vit(depth=4, grid=6), rv.EViT(keep_rate=0.5, layers=(1, 2), fuse=False))
    images, picture = prepare(np.random.default_rng(0).random((96, 96, 3)), model)
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    return trace, picture


def plot_layers(picture, trace, layers=None, image=0):
    return static.plot_status(extract(trace, picture, image=image), layers)


def plot_attention(picture, trace, layer=None, mask=None):
    return static.plot_attention(extract(trace, picture, mask=mask), layer)


def test_plot_layers_draws_one_panel_per_reduction_block(recorded):
    trace, picture = recorded
    figure = plot_layers(picture, trace)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [f"after block 1: {trace.layers[1].num_tokens} tokens",
                      f"after block 2: {trace.layers[2].num_tokens} tokens"]
    assert len(plot_layers(picture, trace, layers=[0, 1, 2, 3]).axes) == 4


def test_plot_layers_refuses_bad_indices(recorded):
    trace, picture = recorded
    with pytest.raises(IndexError, match=r"block must be an int in 0\.\.3 \(the trace has 4 blocks\), got 4"):
        plot_layers(picture, trace, layers=[4])
    with pytest.raises((ValueError, IndexError), match=r"image"):
        plot_layers(picture, trace, image=1)


def test_plot_attention_draws_the_scores_of_a_reduction_block_over_the_image(recorded):
    trace, picture = recorded
    mask = np.zeros(picture.shape[:2], dtype=bool)
    mask[20:50, 30:60] = True
    figure = plot_attention(picture, trace, mask=mask)
    image_ax, heat_ax = figure.axes[:2]
    assert heat_ax.get_title() == "class attention at block 1"           # the first reduction block
    assert "outlined" in image_ax.get_title()
    # the heat drawn is the view's raster of the recorded scores, mask outlined
    from retokviz.views import extract, raster

    expected = raster.attention_image(extract(trace, picture, mask=mask), 1)
    np.testing.assert_array_equal(heat_ax.get_images()[-1].get_array(), expected)
    assert plot_attention(picture, trace, layer=2).axes[1].get_title() == "class attention at block 2"
    with pytest.raises(ValueError, match=r"block 0 has no class-attention scores.*scored blocks are \[1, 2\]"):
        plot_attention(picture, trace, layer=0)


def test_plot_attention_says_when_a_model_has_no_class_token_to_score_with():
    model = rv.apply(tiny_vit(depth=2, grid=4, class_token=False, global_pool="avg"), rv.ToMe(r=2))
    images, picture = prepare(np.zeros((64, 64, 3)), model)
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    with pytest.raises(ValueError, match="no class-attention scores"):
        plot_attention(picture, trace)


def evaluation_result():
    rows = [{"method": "none", "setting": "baseline", "keep_rate": 1.0, "accuracy": 0.9}]
    for index, (name, setting, rate) in enumerate((m, s, k) for m in ("EViT", "ImagePiece", "ToMe")
                                                  for s in ("off the shelf", "trained") for k in (1.0, 0.5)):
        rows.append({"method": name, "setting": setting, "keep_rate": rate, "accuracy": 0.5 + index / 100,
                     "removed": 0.0 if rate == 1.0 else 0.5, "background": float("nan") if rate == 1.0 else 0.8,
                     "random": 0.75, "lift": float("nan") if rate == 1.0 else 0.2})
    return {"conditions": {"test_images": 6}, "rows": rows}


def every_figure(trace, picture):
    return [plot_layers(picture, trace), plot_attention(picture, trace),
            load_script("evaluate").plot_evaluation(evaluation_result())]


def test_every_figure_shows_itself_as_a_png_in_ipython_with_or_without_inline(recorded):
    """A Figure made without pyplot printed as `<Figure size 720x290 with 3 Axes>` in a fresh JupyterLab kernel."""
    from IPython.core.formatters import DisplayFormatter

    for figure in every_figure(*recorded):
        assert isinstance(figure, render.Figure)
        data, _ = DisplayFormatter().format(figure)                      # a fresh kernel: no inline backend
        assert data["image/png"][:4] == PNG and data["text/plain"].startswith("<Figure size")
        inline = DisplayFormatter()                                      # `%matplotlib inline` registers a printer
        inline.formatters["image/png"].for_type(matplotlib.figure.Figure, lambda figure: b"drawn by inline")
        data, _ = inline.format(figure)
        assert data["image/png"] == b"drawn by inline"                    # one picture: the inline one
        assert not {"image/svg+xml", "text/html"} & set(data)


def test_drawing_and_displaying_figures_leaves_the_global_plotting_state_alone(recorded, monkeypatch):
    with plotting_state_kept(monkeypatch):
        for figure in every_figure(*recorded):
            figure._repr_png_()


def test_method_colours_are_one_per_method_by_name_or_label():
    assert palette.method_colour("evit") == palette.method_colour("EViT") == palette.METHOD_COLOURS["evit"]
    assert palette.method_colour("ImagePiece + ToMe") == palette.METHOD_COLOURS["imagepiece+tome"]
    assert palette.method_colour("mine", order=1) == palette.SPARE_COLOURS[1]


def test_the_evaluation_plot_draws_each_method_and_setting_from_the_rows():
    figure = load_script("evaluate").plot_evaluation(evaluation_result())
    accuracy_ax, background_ax = figure.axes
    lines = {line.get_label(): line for line in accuracy_ax.get_lines()}
    assert set(lines) == {"baseline (90.0%)"} | {f"{m}, {s}" for m in ("EViT", "ImagePiece", "ToMe")
                                                  for s in ("off the shelf", "trained")}
    trained_tome = lines["ToMe, trained"]
    assert list(trained_tome.get_xdata()) == [0.5, 1.0] and list(trained_tome.get_ydata()) == pytest.approx([61, 60])
    assert trained_tome.get_color() == palette.METHOD_COLOURS["tome"]
    plotted = [line for line in background_ax.get_lines() if not line.get_label().startswith("a random")]
    assert all(list(line.get_xdata()) == [0.5] for line in plotted)       # keep 1.0 let nothing go: no point
    assert all(list(line.get_ydata()) == pytest.approx([0.2]) for line in plotted)
    assert [line.get_ydata()[0] for line in background_ax.get_lines() if line.get_label() == "a random choice"] \
        == pytest.approx([0])
