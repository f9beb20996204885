"""The local-coherence stem: one call replaces the patch embedding, any multiple of the patch size, it trains."""
from __future__ import annotations

import pytest
import torch

import retokviz as rv
from conftest import check_trace, tiny_vit


def test_one_call_replaces_the_patch_embedding():
    model = tiny_vit(grid=4)
    rv.use_coherence_stem(model)
    stem = model.patch_embed
    assert isinstance(stem, rv.CoherenceStem)
    convs = [m for m in stem.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4 and [c.stride for c in convs] == [(2, 2)] * 4
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in stem.convs) == 4
    assert sum(isinstance(m, torch.nn.ReLU) for m in stem.convs) == 4
    assert stem.proj.kernel_size == (1, 1) and stem.proj.out_channels == model.embed_dim


@pytest.mark.parametrize("size", [(64, 64), (128, 128), (96, 160), (32, 48)])
def test_any_size_divisible_by_16(size):
    model = rv.use_coherence_stem(tiny_vit(grid=4)).eval()
    images = torch.randn(2, 3, *size)
    assert model.patch_embed(images).shape == (2, size[0] // 16, size[1] // 16, 48)
    with torch.no_grad():
        assert model(images).shape == (2, 10)


def test_an_image_size_it_cant_take_is_a_clear_error():
    model = rv.use_coherence_stem(tiny_vit(grid=4))
    with pytest.raises(ValueError, match=r"image sides must be multiples of 16, got 100 x 64"):
        model(torch.randn(1, 3, 100, 64))


def test_other_patch_sizes_where_the_strides_allow():
    model = rv.use_coherence_stem(tiny_vit(depth=1, patch_size=8, img_size=32))
    strides = [m.stride for m in model.patch_embed.convs if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(2, 2), (2, 2), (2, 2), (1, 1)]
    assert model.patch_embed(torch.randn(1, 3, 32, 32)).shape == (1, 4, 4, 48)
    with pytest.raises(ValueError, match=r"makes patches of 2, 4, 8 or 16 px; got patch size 14"):
        rv.use_coherence_stem(tiny_vit("dinov2_registers"))
    with pytest.raises(rv.UnsupportedModelError, match="replaces the patch embedding of a timm ViT"):
        rv.use_coherence_stem(torch.nn.Linear(2, 2))


def test_it_trains():
    torch.manual_seed(0)
    model = rv.use_coherence_stem(tiny_vit(depth=2, grid=4)).train()
    images, labels = torch.randn(8, 3, 64, 64), torch.arange(8) % 2
    before = [p.detach().clone() for p in model.patch_embed.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(not torch.equal(a, b) for a, b in zip(before, model.patch_embed.parameters()))


def test_with_imagepiece_the_trace_has_the_stems_grid():
    model = rv.use_coherence_stem(tiny_vit(depth=3, grid=4)).eval()
    rv.apply(model, rv.ImagePiece(keep_rate=0.5, layers=(0,)))
    with rv.record(model) as trace, torch.no_grad():
        model(torch.randn(2, 3, 96, 128))
    assert trace.grid_size == (6, 8)
    check_trace(trace, model, batch=2)
