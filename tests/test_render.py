"""Preparing images and drawing traces."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import retokviz as rv
from retokviz.images import prepare
from retokviz.render import STATUS_COLOURS, overlay_status, plot_attention, plot_layers, status_grid
from conftest import tiny_vit


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
    with pytest.raises(ValueError, match=r"\[H, W, 3\].*got shape \(8, 8\)"):
        prepare(np.zeros((8, 8)), model)


@pytest.fixture
def recorded():
    model = rv.apply(tiny_vit(depth=4, grid=6), rv.EViT(keep_rate=0.5, layers=(1, 2), fuse=False))
    images, picture = prepare(np.random.default_rng(0).random((96, 96, 3)), model)
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    return trace, picture


def test_status_grid_and_overlay_follow_the_trace(recorded):
    trace, picture = recorded
    grid = status_grid(trace, 2)
    assert grid.shape == (6, 6) and (grid == rv.Status.DROPPED).sum() == 36 - trace.layers[2].num_tokens
    tinted = overlay_status(picture, grid)
    assert tinted.shape == picture.shape
    row, col = map(int, np.argwhere(grid == rv.Status.DROPPED)[0])
    kept_row, kept_col = map(int, np.argwhere(grid == rv.Status.KEPT)[0])
    dropped_patch = tinted[row * 16:(row + 1) * 16, col * 16:(col + 1) * 16]
    alpha = STATUS_COLOURS[rv.Status.DROPPED][3]
    np.testing.assert_allclose(dropped_patch, picture[row * 16:(row + 1) * 16, col * 16:(col + 1) * 16] * (1 - alpha))
    kept = np.s_[kept_row * 16:(kept_row + 1) * 16, kept_col * 16:(kept_col + 1) * 16]
    np.testing.assert_allclose(tinted[kept], picture[kept])


def test_plot_layers_draws_one_panel_per_reduction_block(recorded):
    trace, picture = recorded
    figure = plot_layers(picture, trace)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [f"after block 1: {trace.layers[1].num_tokens} tokens",
                      f"after block 2: {trace.layers[2].num_tokens} tokens"]
    assert len(plot_layers(picture, trace, layers=[0, 1, 2, 3]).axes) == 4


def test_status_grid_refuses_bad_indices(recorded):
    trace, _ = recorded
    with pytest.raises(IndexError, match=r"layer must be in 0..3, got 4"):
        status_grid(trace, 4)
    with pytest.raises(IndexError, match=r"image must be in 0..0 \(the batch has 1\), got 1"):
        status_grid(trace, 0, image=1)


def test_plot_attention_draws_the_scores_of_a_reduction_block_over_the_image(recorded):
    trace, picture = recorded
    mask = np.zeros(picture.shape[:2], dtype=bool)
    mask[20:50, 30:60] = True
    figure = plot_attention(picture, trace, mask=mask)
    image_ax, heat_ax = figure.axes[:2]
    assert heat_ax.get_title() == "class attention at block 1"           # the first reduction block
    assert "outlined" in image_ax.get_title() and image_ax.collections    # the mask's contour
    drawn = heat_ax.get_images()[-1].get_array()
    np.testing.assert_allclose(drawn, trace.layers[1].scores[0].reshape(6, 6).numpy())
    assert plot_attention(picture, trace, layer=2).axes[1].get_title() == "class attention at block 2"
    with pytest.raises(ValueError, match=r"block 0 made no reduction.*scored blocks are \[1, 2\]"):
        plot_attention(picture, trace, layer=0)


def test_plot_attention_says_when_a_model_has_no_class_token_to_score_with():
    model = rv.apply(tiny_vit(depth=2, grid=4, class_token=False, global_pool="avg"), rv.ToMe(r=2))
    images, picture = prepare(np.zeros((64, 64, 3)), model)
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    with pytest.raises(ValueError, match="no class-attention scores"):
        plot_attention(picture, trace)
