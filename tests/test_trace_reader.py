"""One reader answers "what was let go of": the counts a figure draws are the counts the metric reports, for every
method and composition, and the method travels as data (a description is never parsed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retokviz as rv
from conftest import tiny_vit
from retokviz.measure.metrics import let_go_counts
from retokviz.trace.read import gone_by_block, let_go_statuses
from retokviz.views import extract, raster

METHODS = {
    "evit": rv.EViT(keep_rate=0.5, layers=(1, 2)),
    "evit-nofuse": rv.EViT(keep_rate=0.5, layers=(1, 2), fuse=False),
    "imagepiece": rv.ImagePiece(keep_rate=0.5, layers=(1, 2)),
    "tome": rv.ToMe(r=4),
    "imagepiece+tome": (rv.ImagePiece(keep_rate=0.5, layers=(1, 2)), rv.ToMe(r=2)),
    "evit+tome": (rv.EViT(keep_rate=0.6, layers=(2,)), rv.ToMe(r=3)),
}


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    images = torch.randn(3, 3, 96, 96)
    masks = torch.zeros(3, 96, 96, dtype=torch.bool)
    masks[0, 10:40, 20:70] = True
    masks[1, 50:90, 5:30] = True
    masks[2, 30:60, 30:60] = True
    return images, masks


@pytest.mark.parametrize("name", list(METHODS))
def test_the_figure_counts_what_the_metric_counts(name, batch):
    images, masks = batch
    model = rv.apply(tiny_vit(depth=4, grid=6), METHODS[name])
    counts = let_go_counts(model, images, masks, batch_size=2)
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    assert int(counts.removed[-1].sum()) > 0, "the method let something go, so the comparison can fail"
    for image in range(len(images)):
        arrays = extract(trace, images[image], mask=masks[image], image=image)
        for block in range(arrays.num_blocks):
            drawn = raster.removed_counts(arrays, block)
            assert drawn["removed"] == int(counts.removed[block, image]), (name, image, block)
            assert drawn["background"] == int(counts.background[block, image]), (name, image, block)
        picture = raster.removed_image(arrays, arrays.num_blocks - 1)
        assert picture.shape == (96, 96, 3)


def test_what_counts_as_let_go_comes_from_the_method_not_its_description():
    assert let_go_statuses(rv.ToMe(r=2)) == (rv.Status.MERGED,)
    assert let_go_statuses((rv.ToMe(r=2), rv.ToMe(r=1))) == (rv.Status.MERGED,)
    assert let_go_statuses(rv.EViT()) == let_go_statuses((rv.ImagePiece(), rv.ToMe(r=2))) \
        == (rv.Status.DROPPED, rv.Status.FUSED)
    assert let_go_statuses(None) == ()

    class Renamed(rv.ToMe):   # a merging method whose description does not start with "ToMe("
        pass

    model = rv.apply(tiny_vit(depth=2, grid=4), Renamed(r=3))
    with rv.record(model) as trace, torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    arrays = extract(trace, torch.randn(3, 64, 64))
    assert arrays.method.startswith("Renamed(") and arrays.let_go == (int(rv.Status.MERGED),)
    gone = gone_by_block(trace)[:, 0].reshape(len(trace.layers), 4, 4).numpy()
    drawn = np.stack([raster.removed_patches(arrays, block) for block in range(arrays.num_blocks)])
    assert gone.any() and (drawn == gone).all()
