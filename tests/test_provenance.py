"""rv.record and the trace contract: every patch accounted for, owner/status/num_tokens agree, no cost when off."""
from __future__ import annotations

import pytest
import torch

import retokviz as rv
from retokviz.methods.base import Regroup
from retokviz.trace.record import Provenance
from conftest import DEVICES, check_trace, images_for, tiny_vit


@pytest.mark.parametrize("fuse", [True, False])
def test_trace_invariants_for_every_family(family, fuse):
    model = tiny_vit(family, depth=6, grid=6)
    method = rv.EViT(keep_rate=0.6, layers=(0, 2, 4), fuse=fuse)
    rv.apply(model, method)
    with rv.record(model) as trace, torch.no_grad():
        model(images_for(model, batch=3))
    check_trace(trace, model, batch=3)
    assert trace.method is method
    expected, tokens = [], 36
    for index in range(6):
        tokens = method.tokens_after(tokens, index) if index in (0, 2, 4) else tokens
        expected.append(tokens)
    assert [layer.num_tokens for layer in trace.layers] == expected
    last = trace.layers[-1].status
    assert bool((last == rv.Status.FUSED).any()) is fuse and bool((last == rv.Status.DROPPED).any()) is not fuse
    # EViT merges nothing itself: a patch is MERGED only in an earlier fused token that a later step kept
    merged = last == rv.Status.MERGED
    was_fused = torch.stack([layer.status == rv.Status.FUSED for layer in trace.layers]).any(dim=0)
    assert bool(was_fused[merged].all())
    assert fuse or not bool(merged.any())


def test_scores_are_the_class_attention_of_the_untouched_attention(family):
    """The side computation (hooks on q_norm/k_norm) equals the CLS row of the explicit attention matrix."""
    model = tiny_vit(family, depth=3, grid=5)
    images = images_for(model)
    rows = []
    for block in model.blocks:  # timm's explicit path exposes the attention probabilities to attn_drop
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda m, args, out: rows.append(out[:, :, 0].mean(dim=1)))
    with torch.no_grad():
        model(images)
    prefix = model.num_prefix_tokens
    rv.apply(model, rv.EViT(keep_rate=1.0, layers=(0, 1, 2)))
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    for index in range(3):
        torch.testing.assert_close(trace.layers[index].scores, rows[index][:, prefix:], rtol=1e-5, atol=1e-6)


def test_scores_follow_the_patches_after_a_reduction():
    model = rv.apply(tiny_vit(depth=4, grid=6), rv.EViT(keep_rate=0.5, layers=(1, 2)))
    with rv.record(model) as trace, torch.no_grad():
        model(images_for(model))
    first, second = trace.layers[1], trace.layers[2]
    assert trace.layers[0].scores is None and trace.layers[3].scores is None
    assert not bool(first.scores.isnan().any())
    # the kept patches are the top half by their score
    for b in range(2):
        top = set(first.scores[b].topk(18).indices.tolist())
        assert top == set(torch.nonzero(first.status[b] == rv.Status.KEPT).flatten().tolist())
    # at the second reduction, all patches of one token share its score, and the fused ones share the fused score
    fused = first.status == rv.Status.FUSED
    for b in range(2):
        assert second.scores[b][fused[b]].unique().numel() == 1
    assert torch.equal(second.scores.isnan(), first.owner == -1)


class SpyEViT(rv.EViT):
    """EViT that keeps what each reduction received and returned."""

    calls: list

    def reduce(self, x, view, layer, track):
        reduced = super().reduce(x, view, layer, track)
        self.calls.append((x, view.class_scores(), reduced.x))
        return reduced


def test_the_trace_follows_the_actual_tokens():
    """Leaving a reduction, each KEPT patch's token is the very token that carried it, and the fused token is
    the score-weighted sum of the tokens that were fused at that step."""
    model = tiny_vit(depth=5, grid=6)
    method = SpyEViT(keep_rate=0.6, layers=(1, 3))
    object.__setattr__(method, "calls", [])
    rv.apply(model, method)
    with rv.record(model) as trace, torch.no_grad():
        model(images_for(model, batch=2))
    prefix = model.num_prefix_tokens
    before = trace.layers[0]
    for (x, scores, out), index in zip(method.calls, (1, 3)):
        after = trace.layers[index]
        tokens_in, tokens_out = x[:, prefix:], out[:, prefix:]
        for b in range(2):
            kept = after.status[b] == rv.Status.KEPT
            torch.testing.assert_close(tokens_out[b, after.owner[b, kept]], tokens_in[b, before.owner[b, kept]])
            newly_fused = (after.owner[b] == after.num_tokens - 1) & (before.owner[b] >= 0)
            fused_tokens = before.owner[b, newly_fused].unique()
            expected = (scores[b, fused_tokens, None] * tokens_in[b, fused_tokens]).sum(0)
            torch.testing.assert_close(tokens_out[b, -1], expected)
        before = trace.layers[index + 1] if index + 1 < len(trace.layers) else after


def test_nothing_is_tracked_or_left_behind_when_not_recording(monkeypatch):
    model = rv.apply(tiny_vit(depth=3), rv.EViT(keep_rate=0.5, layers=(1,)))
    images = images_for(model)
    hooks = len(model.patch_embed._forward_pre_hooks)
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    assert len(model.patch_embed._forward_pre_hooks) == hooks and model._retokviz.recorder is None
    layers = trace.layers
    tracked = []
    original = rv.EViT.reduce

    def reduce_checking_track(self, x, view, layer, track):
        tracked.append(track)
        return original(self, x, view, layer, track)

    monkeypatch.setattr(rv.EViT, "reduce", reduce_checking_track)
    with torch.no_grad():
        model(images)
    assert tracked == [False], "no provenance is computed outside rv.record"
    assert trace.layers is layers, "a forward outside the with block leaves the trace alone"


def test_the_trace_holds_the_last_forward_pass():
    model = rv.apply(tiny_vit(depth=2), rv.EViT(keep_rate=0.5, layers=(0,)))
    with rv.record(model) as trace, torch.no_grad():
        model(images_for(model, batch=1))
        model(images_for(model, batch=3))
    assert len(trace.layers) == 2 and trace.layers[0].owner.shape[0] == 3


def test_recording_cleans_up_after_an_error():
    model = rv.apply(tiny_vit(depth=2), rv.EViT(keep_rate=0.5, layers=(0,)))
    hooks = len(model.patch_embed._forward_pre_hooks)
    with pytest.raises(RuntimeError, match="boom"):
        with rv.record(model):
            raise RuntimeError("boom")
    assert model._retokviz.recorder is None and len(model.patch_embed._forward_pre_hooks) == hooks


def test_records_cannot_nest_on_one_model():
    model = rv.apply(tiny_vit(depth=2), rv.EViT())
    with rv.record(model):
        with pytest.raises(RuntimeError, match="already being recorded"):
            with rv.record(model):
                pass


@pytest.mark.parametrize("size, grid", [((64, 64), (4, 4)), ((96, 64), (6, 4)), ((32, 112), (2, 7))])
def test_any_image_size_the_model_accepts(size, grid):
    model = rv.apply(tiny_vit(depth=4, dynamic_img_size=True), rv.EViT(keep_rate=0.5, layers=(1, 2)))
    with rv.record(model) as trace, torch.no_grad():
        model(images_for(model, batch=2, size=size))
    assert trace.grid_size == grid
    check_trace(trace, model, batch=2)


@pytest.mark.parametrize("device", DEVICES)
def test_trace_on_the_device_and_moved_to_cpu(device):
    model = rv.apply(tiny_vit(depth=4).to(device), rv.EViT(keep_rate=0.5, layers=(1, 2)))
    with rv.record(model) as trace, torch.no_grad():
        model(images_for(model).to(device))
    assert {layer.owner.device.type for layer in trace.layers} == {device}
    on_cpu = trace.to("cpu")
    assert {layer.status.device.type for layer in on_cpu.layers} == {"cpu"}
    check_trace(on_cpu, model, batch=2)


def test_provenance_of_merges_drops_and_fusions():
    """The generic bookkeeping, on hand-made steps of the kinds ToMe and ImagePiece will make."""
    provenance = Provenance(batch=1, num_patches=6, device=torch.device("cpu"))
    assert provenance.status().tolist() == [[rv.Status.KEPT] * 6]
    # tokens 0,1 merge into new 0; token 2 is dropped; 3 -> 1; 4 and 5 fuse into new 2 (a fused token)
    provenance.apply(Regroup(torch.tensor([[0, 0, -1, 1, 2, 2]]), num_out=3, fused_slot=2))
    assert provenance.owner.tolist() == [[0, 0, -1, 1, 2, 2]]
    K, M, F, D = rv.Status.KEPT, rv.Status.MERGED, rv.Status.FUSED, rv.Status.DROPPED
    assert provenance.status().tolist() == [[M, M, D, K, F, F]]
    # a later step keeps the fused token and merges the kept one into it: an ordinary token of several patches
    provenance.apply(Regroup(torch.tensor([[0, 1, 1]]), num_out=2))
    assert provenance.owner.tolist() == [[0, 0, -1, 1, 1, 1]]
    assert provenance.status().tolist() == [[M, M, D, M, M, M]]
    # a step that fuses the merged pair: only its patches are FUSED now
    provenance.apply(Regroup(torch.tensor([[1, 0]]), num_out=2, fused_slot=1))
    assert provenance.status().tolist() == [[F, F, D, M, M, M]]
    scores = provenance.per_patch(torch.tensor([[0.25, 0.75]]))
    assert scores[0, :2].tolist() == [0.75, 0.75] and scores[0, 2].isnan() and scores[0, 3:].tolist() == [0.25] * 3


def test_a_fused_token_that_moves_differently_per_image_stays_fused_in_each():
    """EViT fuses at block 1 and ToMe then merges in the same block: in some images ToMe merges the fused token
    away, in others it keeps it at another index. Each image's statuses must be what it gets alone (the fused
    token was once reported MERGED for the whole batch as soon as the images disagreed)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=128, depth=4, num_classes=10, embed_dim=48,
                              num_heads=3).eval()
    rv.apply(model, [rv.EViT(0.5, layers=(1,)), rv.ToMe(r=(0, 6, 0, 0))])
    images = torch.randn(16, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with rv.record(model) as together, torch.no_grad():
        model(images)
    fused_somewhere = False
    for index in range(images.shape[0]):
        with rv.record(model) as alone, torch.no_grad():
            model(images[index:index + 1])
        for block, (batch_layer, single_layer) in enumerate(zip(together.layers, alone.layers)):
            assert torch.equal(batch_layer.status[index], single_layer.status[0]), (index, block)
        fused_somewhere |= bool((alone.layers[1].status == rv.Status.FUSED).any())
    assert fused_somewhere  # the case the test is about occurred
