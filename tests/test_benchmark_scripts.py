"""The benchmark scripts' own arithmetic (the scripts are run by hand for the README; their parts are tested here)."""
from __future__ import annotations

import pytest
import torch

import retokviz as rv
from conftest import load_script, tiny_vit
from retokviz.metrics import background_removed_by_block


def test_why_imagepiece_lets_go_accounts_for_every_patch_let_go_of_once():
    split_by_rank = load_script("why_imagepiece_lets_go").split_by_rank
    images, _, masks = rv.data.make_clutter(12, 3, split="test")
    method = rv.ImagePiece(keep_rate=0.5, layers=(1, 2))
    model = rv.apply(tiny_vit(depth=4, grid=8, seed=1), method)
    background = ~rv.data.patch_mask(masks).flatten(1)                               # [12, 64]
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    counts = split_by_rank(trace, method.keep_rate, background)
    assert {block for block, _ in counts} == {1, 2}
    # per block, the two reasons together are the patches let go of there, and their background, as rv.metrics says
    cumulative = background_removed_by_block(model, images, masks, every_block=True)
    patches = background.numel()
    let_go = background_so_far = 0
    for block in (1, 2):
        let_go += sum(counts[block, reason][0] for reason in ("displaced", "candidate") if (block, reason) in counts)
        background_so_far += sum(counts[block, reason][1] for reason in ("displaced", "candidate")
                                 if (block, reason) in counts)
        assert let_go / patches == pytest.approx(cumulative[block].removed)
        assert background_so_far / let_go == pytest.approx(cumulative[block].background)
    # both reasons occur: pieces displace tokens of the top K, and unmerged candidates are dropped
    assert {reason for _, reason in counts} == {"displaced", "candidate"}
    assert all(0 <= plain <= count for count, plain in counts.values())
