"""Counting MACs: the matrix products of a real forward pass, reduction included."""
from __future__ import annotations

from torch import nn

import retokviz as rv
from conftest import tiny_vit


def expected_macs(tokens: list[int], dim: int, patches: int, patch_size: int, classes: int, mlp: int = 4) -> int:
    """A plain ViT's MACs by hand: the patch projection, then per block qkv, q k^T, attn v, proj and the MLP, with
    `tokens[i]` tokens (class token included) entering block i's attention and leaving it into the MLP."""
    total = patches * 3 * patch_size ** 2 * dim
    for n in tokens:
        total += n * dim * 3 * dim + 2 * n * n * dim + n * dim * dim + 2 * n * dim * mlp * dim
    return total + dim * classes


def test_count_macs_matches_the_count_by_hand_with_and_without_a_reduction():
    model = tiny_vit(depth=2, grid=4)                              # 16 patches + class token, width 48
    assert rv.count_macs(model) == expected_macs([17, 17], 48, 16, 16, 10)
    rv.apply(model, rv.EViT(keep_rate=0.5, layers=(0,), fuse=False))
    # block 0 attends over 17 tokens, then keeps 8 patches: its MLP and all of block 1 see 9 tokens
    hand = expected_macs([17, 9], 48, 16, 16, 10) - 2 * (17 - 9) * 48 * 4 * 48
    assert rv.count_macs(model) == hand


def test_count_macs_works_on_a_model_with_the_coherence_stem():
    model = rv.use_coherence_stem(tiny_vit(depth=2, grid=4))      # 64 px: 3 x 3 stride-2 convs to 32, 16, 8, 4
    convs = [module for module in model.patch_embed.modules() if isinstance(module, nn.Conv2d)]
    assert [conv.kernel_size for conv in convs] == [(3, 3)] * 4 + [(1, 1)] and convs[0].in_channels == 3
    stem = sum(conv.weight.numel() * side ** 2 for conv, side in zip(convs, [32, 16, 8, 4, 4]))
    plain_projection = 16 * 3 * 16 ** 2 * 48
    assert rv.count_macs(model) == expected_macs([17, 17], 48, 16, 16, 10) - plain_projection + stem
