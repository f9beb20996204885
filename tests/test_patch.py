"""rv.apply / rv.remove on timm ViTs: parity, exact removal, replacement, refusals, training."""
from __future__ import annotations

import copy
from unittest import mock

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block

import retokviz as rv
from conftest import DEVICES, images_for, run, tiny_vit


def test_keep_rate_one_gives_the_untouched_output_for_every_family(family):
    model = tiny_vit(family)
    images = images_for(model)
    expected = run(model, images)
    rv.apply(model, rv.EViT(keep_rate=1.0, layers=(0, 1, 2, 3)))
    assert torch.equal(run(model, images), expected)
    with rv.record(model) as trace:  # recording takes the side path at every reduction block: still identical
        assert torch.equal(run(model, images), expected)
    assert [layer.num_tokens for layer in trace.layers] == [model.patch_embed.num_patches] * 4


def test_reducing_changes_the_output_for_every_family(family):
    """The parity above is not vacuous: the same models do react to a reduction."""
    model = tiny_vit(family)
    images = images_for(model)
    expected = run(model, images)
    rv.apply(model, rv.EViT(keep_rate=0.5, layers=(1,)))
    assert not torch.allclose(run(model, images), expected, atol=1e-3)


def test_parity_holds_in_training_mode_without_stochastic_layers():
    model = tiny_vit("deit3_layerscale").train()
    images = images_for(model)
    expected = model(images)
    rv.apply(model, rv.EViT(keep_rate=1.0))
    assert torch.equal(model(images), expected)


def _snapshot(model):
    return {
        "classes": [type(m) for m in model.modules()],
        "dict_keys": [sorted(m.__dict__) for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        "params": {k: v.clone() for k, v in model.state_dict().items()},
        "param_ids": [id(p) for p in model.parameters()],
    }


def test_remove_restores_the_model_exactly(family):
    model = tiny_vit(family)
    images = images_for(model)
    before, expected = _snapshot(model), run(model, images)
    rv.apply(model, rv.EViT(keep_rate=0.5))
    with rv.record(model):
        reduced = run(model, images)
    assert not torch.allclose(reduced, expected, atol=1e-3)
    assert rv.remove(model) is model
    after = _snapshot(model)
    assert after["classes"] == before["classes"] and all(type(b) is Block for b in model.blocks)
    assert after["dict_keys"] == before["dict_keys"]
    assert after["hooks"] == before["hooks"]
    assert after["param_ids"] == before["param_ids"]
    assert all(torch.equal(after["params"][k], v) for k, v in before["params"].items())
    assert torch.equal(run(model, images), expected)
    assert rv.method_of(model) is None
    rv.remove(model)  # removing twice is harmless


def test_applying_again_replaces_the_method_without_rebuilding():
    model = tiny_vit(depth=4, grid=6)
    images = images_for(model)
    rv.apply(model, rv.EViT(keep_rate=0.5, layers=(1,)))
    blocks = [id(b) for b in model.blocks]
    hooks = [len(b.attn.q_norm._forward_hooks) + len(b.attn.k_norm._forward_hooks) for b in model.blocks]
    for keep_rate, expected_tokens in [(0.5, 19), (0.7, 27), (0.25, 10), (1.0, 36)]:
        method = rv.EViT(keep_rate=keep_rate, layers=(1,))
        assert rv.apply(model, method) is model
        assert rv.method_of(model) is method
        with rv.record(model) as trace:
            run(model, images)
        assert trace.layers[1].num_tokens == expected_tokens
    assert [id(b) for b in model.blocks] == blocks
    assert [len(b.attn.q_norm._forward_hooks) + len(b.attn.k_norm._forward_hooks) for b in model.blocks] == hooks


def test_fused_attention_stays_on():
    model = tiny_vit(depth=4)
    flags = [b.attn.fused_attn for b in model.blocks]
    assert all(flags), "timm's fused attention is expected on by default"
    rv.apply(model, rv.EViT(keep_rate=0.5, layers=(1, 2)))
    assert [b.attn.fused_attn for b in model.blocks] == flags
    with mock.patch.object(F, "scaled_dot_product_attention", wraps=F.scaled_dot_product_attention) as sdpa:
        with rv.record(model):
            run(model, images_for(model))
    assert sdpa.call_count == len(model.blocks)


def test_gradients_flow_in_training_mode():
    model = tiny_vit("deit3_layerscale", depth=4).train()
    rv.apply(model, rv.EViT(keep_rate=0.5, layers=(1, 2)))
    images = images_for(model).requires_grad_()
    model(images).logsumexp(dim=1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert images.grad.abs().sum() > 0


def test_a_deep_copy_of_a_patched_model_is_patched_on_its_own():
    model = rv.apply(tiny_vit(), rv.EViT(keep_rate=0.5, layers=(1,)))
    clone = copy.deepcopy(model)
    rv.apply(clone, rv.EViT(keep_rate=0.25, layers=(1,)))
    images = images_for(model)
    with rv.record(model) as trace, rv.record(clone) as clone_trace:
        run(model, images), run(clone, images)
    assert (trace.layers[1].num_tokens, clone_trace.layers[1].num_tokens) == (9, 5)
    rv.remove(clone)
    assert type(model.blocks[0]) is not Block and type(clone.blocks[0]) is Block
    assert torch.equal(run(clone, images), run(tiny_vit(), images))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_models_device(device):
    model = rv.apply(tiny_vit().to(device), rv.EViT(keep_rate=0.5, layers=(1, 2)))
    with rv.record(model) as trace:
        logits = run(model, images_for(model).to(device))
    assert logits.device.type == device and trace.layers[-1].owner.device.type == device


def test_an_attention_mask_is_refused_where_tokens_are_reduced():
    model = rv.apply(tiny_vit(), rv.EViT(keep_rate=0.5, layers=(2,)))
    images = images_for(model)
    mask = torch.ones(17, 17, dtype=torch.bool)
    with pytest.raises(ValueError, match="block 2 reduces or merges tokens"):
        model(images, attn_mask=mask)
    rv.apply(model, rv.EViT(keep_rate=1.0, layers=(2,)))  # nothing to reduce: timm's own path takes the mask
    model(images, attn_mask=mask)


def _refused(model, method, *fragments):
    before = _snapshot(model)
    with pytest.raises((rv.UnsupportedModelError, ValueError, TypeError)) as error:
        rv.apply(model, method)
    for fragment in fragments:
        assert fragment in str(error.value)
    after = _snapshot(model)
    assert after["classes"] == before["classes"] and after["dict_keys"] == before["dict_keys"]
    assert after["hooks"] == before["hooks"]
    return error.value


def test_a_distilled_deit_is_refused_before_anything_changes():
    model = timm.create_model("deit_small_distilled_patch16_224", depth=2, embed_dim=48, num_heads=3, img_size=64)
    error = _refused(model, rv.EViT(), "deit_small_distilled_patch16_224", "distillation token")
    assert isinstance(error, rv.UnsupportedModelError)


def test_a_cnn_is_refused():
    model = timm.create_model("resnet18", num_classes=10)
    _refused(model, rv.EViT(), "resnet18", "ResNet", "VisionTransformer")


def test_a_swin_is_refused():
    model = timm.create_model("swin_tiny_patch4_window7_224", embed_dim=24, depths=(1, 1, 1, 1),
                              num_heads=(1, 1, 1, 1))
    _refused(model, rv.EViT(), "swin_tiny_patch4_window7_224", "SwinTransformer")


def test_a_model_without_class_token_is_refused_by_evit():
    model = tiny_vit("vit_augreg", class_token=False, global_pool="avg")
    _refused(model, rv.EViT(), "vit_small_patch16_224", "no class token", "global_pool='avg'")


def test_a_vit_with_other_blocks_is_refused():
    model = timm.create_model("vit_small_patch16_18x2_224", depth=2, embed_dim=48, num_heads=3, img_size=64)
    _refused(model, rv.EViT(), "vit_small_patch16_18x2_224", "block 0 is a ParallelThingsBlock")


def test_something_that_is_not_a_method_is_refused():
    _refused(tiny_vit(), 0.7, "rv.EViT(keep_rate=0.7)", "0.7")


def test_layers_outside_the_depth_are_refused_and_the_old_method_stays():
    model = tiny_vit(depth=4)
    _refused(model, rv.EViT(layers=(1, 4)), "EViT.layers=(1, 4)", "block 4", "0..3", "depth 4")
    first = rv.EViT(keep_rate=0.5, layers=(1,))
    rv.apply(model, first)
    with pytest.raises(ValueError, match="0..3"):
        rv.apply(model, rv.EViT(layers=(9,)))
    assert rv.method_of(model) is first


def test_record_needs_a_method_applied():
    with pytest.raises(RuntimeError, match=r"deit_small_patch16_224 \(VisionTransformer\) has no retokviz method"):
        with rv.record(tiny_vit()):
            pass


def test_runs_in_bfloat16():
    model = rv.apply(tiny_vit().to(torch.bfloat16), rv.EViT(keep_rate=0.5, layers=(1, 2)))
    with rv.record(model) as trace:
        logits = run(model, images_for(model).to(torch.bfloat16))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    assert [layer.num_tokens for layer in trace.layers] == [16, 9, 6, 6]
