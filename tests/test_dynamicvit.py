"""DynamicViT (docs/methods.md): against the authors' code (tests/dynamicvit_official, unchanged) at inference and
for one training step's loss, and its fields, its modules on the model, checkpoints, training and resuming."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
import sys
import types
import warnings
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import retokviz as rv
from retokviz.methods.compose import token_counts
from retokviz.patch import state_of
from retokviz.training.losses import PruningObjective, make_teacher
from conftest import check_trace, images_for, run, tiny_vit

OFFICIAL = Path(__file__).parent / "dynamicvit_official"
DEIT_S = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4, qkv_bias=True)


# ------------------------------------------------------------------------------------------- the authors' code

def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def official():
    """Their dyvit.py and losses.py, imported with the shims today's torch needs: their utils.py imports
    torch._six (gone since torch 2.0) and tensorboardX (not installed), and dyvit.py imports it as `utils`."""
    shims = {"torch._six": types.SimpleNamespace(inf=math.inf),
             "tensorboardX": types.SimpleNamespace(SummaryWriter=None)}
    saved = {name: sys.modules.get(name) for name in (*shims, "utils")}
    try:
        sys.modules.update(shims)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")            # timm.models.layers is deprecated in favour of timm.layers
            _load("utils", OFFICIAL / "utils.py")
            dyvit = _load("dynamicvit_official_dyvit", OFFICIAL / "dyvit.py")
            losses = _load("dynamicvit_official_losses", OFFICIAL / "losses.py")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return types.SimpleNamespace(dyvit=dyvit, losses=losses)


def deit_pair(official, keep_rate: float = 0.7):
    """DeiT-S with random weights twice: ours (timm + rv.DynamicViT) and theirs, the same backbone and predictors.
    The predictors' weights are redrawn larger than their initialisation, so that the keep scores spread."""
    torch.manual_seed(0)
    ours = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    rv.apply(ours, rv.DynamicViT(keep_rate=keep_rate))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in ours.retokviz_modules.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    theirs = official.dyvit.VisionTransformerDiffPruning(
        **DEIT_S, pruning_loc=[3, 6, 9], token_ratio=[keep_rate, keep_rate ** 2, keep_rate ** 3], distill=True)
    state = {key.replace("retokviz_modules.", "score_predictor."): value for key, value in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    return ours, theirs.eval()


def their_kept(official, theirs, images, monkeypatch):
    """Their logits, and at each pruning block the original patches kept [B, K], in their order (by score)."""
    select = official.dyvit.batch_index_select
    kept, patches = [], [torch.arange(196).expand(images.shape[0], -1)]

    def spy(x, index):
        if x.dim() == 3 and x.shape[-1] > 1:                           # the tokens, class token first
            patches[0] = patches[0].gather(1, index[:, 1:] - 1)
            kept.append(patches[0])
        return select(x, index)

    monkeypatch.setattr(official.dyvit, "batch_index_select", spy)
    with torch.no_grad():
        logits = theirs(images)
    return logits, kept


def test_inference_agrees_with_the_authors_code(official, monkeypatch, capsys):
    ours, theirs = deit_pair(official)
    images = images_for(ours, batch=2, seed=3)
    their_logits, their_patches = their_kept(official, theirs, images, monkeypatch)
    with rv.record(ours) as trace, torch.no_grad():
        logits = ours(images)
    assert (logits - their_logits).abs().max() < 1e-5, (logits - their_logits).abs().max()
    assert [layer.num_tokens for layer in trace.layers] == [196] * 3 + [137] * 3 + [96] * 3 + [67] * 3
    for layer, patches in zip((3, 6, 9), their_patches):
        owner = trace.layers[layer].owner                               # [B, P]: the token carrying each patch
        ours_in_order = torch.stack([torch.argsort(row.masked_fill(row < 0, 10**6))[:patches.shape[1]]
                                     for row in owner])
        assert torch.equal(ours_in_order, patches), layer                # the same patches, in the same order
    print(f"max |logits - theirs| = {(logits - their_logits).abs().max():.2e}", file=sys.stderr)


def _fixed_gumbel(noise):
    """F.gumbel_softmax with the noise of each call given, call after call (hard, straight-through, as torch's)."""
    calls = []

    def gumbel_softmax(logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
        soft = ((logits + noise[len(calls) % len(noise)]) / tau).softmax(dim)
        calls.append(1)
        if not hard:
            return soft
        index = soft.max(dim, keepdim=True)[1]
        return torch.zeros_like(logits).scatter_(dim, index, 1.0) - soft.detach() + soft

    return gumbel_softmax


def test_one_training_step_has_the_authors_loss_and_gradients(official, monkeypatch, capsys):
    ours, theirs = deit_pair(official)
    teacher = official.dyvit.VisionTransformerTeacher(**DEIT_S)
    teacher.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("retokviz_modules.")})
    teacher.eval()
    images, labels = images_for(ours, batch=2, seed=4), torch.tensor([3, 917])
    generator = torch.Generator().manual_seed(5)
    noise = [-torch.log(-torch.log(torch.rand(2, 196, 2, generator=generator))) for _ in range(3)]
    monkeypatch.setattr(torch.nn.functional, "gumbel_softmax", _fixed_gumbel(noise))
    keep = [0.7, 0.7 ** 2, 0.7 ** 3]
    criterion = official.losses.DistillDiffPruningLoss_dynamic(
        teacher, timm.loss.LabelSmoothingCrossEntropy(smoothing=0.1), clf_weight=1.0, keep_ratio=keep,
        mse_token=True, ratio_weight=2.0, distill_weight=0.5)
    theirs.train()
    their_loss, their_parts = criterion(images, theirs(images), labels)
    their_loss.backward()

    ours.train()
    objective = PruningObjective(ours, make_teacher(ours), nn.CrossEntropyLoss(label_smoothing=0.1))
    _, loss = objective(ours, images, labels)
    loss.backward()
    assert abs(loss.item() - their_loss.item()) < 1e-5, (loss.item(), their_loss.item())
    ours_parts = [objective.parts[name] for name in ("classification", "ratio", "distill", "token")]
    for mine, theirs_part in zip(ours_parts, their_parts):
        assert abs(float(mine) - float(theirs_part.detach())) < 1e-5, (ours_parts, their_parts)
    # the decisions are a straight-through sample: gradients reach every predictor through attention and ratio
    worst = 0.0
    for stage in range(3):
        mine = ours.retokviz_modules[stage].in_conv[1].weight.grad
        reference = theirs.score_predictor[stage].in_conv[1].weight.grad
        worst = max(worst, float((mine - reference).abs().max() / reference.abs().max()))
    mine, reference = ours.blocks[8].attn.qkv.weight.grad, theirs.blocks[8].attn.qkv.weight.grad
    worst = max(worst, float((mine - reference).abs().max() / reference.abs().max()))
    assert worst <= 1e-4, worst
    print(f"|loss - theirs| = {abs(loss.item() - their_loss.item()):.2e}, gradients within {worst:.1e} of the "
          "largest", file=sys.stderr)


# ------------------------------------------------------------------------------------------------- the fields

@pytest.mark.parametrize("keep_rate", [0, -0.1, 1.5, float("nan")])
def test_keep_rate_outside_the_range_is_refused(keep_rate):
    with pytest.raises(ValueError, match=r"DynamicViT.keep_rate must be in \(0, 1\], got " + re.escape(str(keep_rate))):
        rv.DynamicViT(keep_rate=keep_rate)


@pytest.mark.parametrize("keep_rate", ["0.7", None, True])
def test_keep_rate_that_is_not_a_number_is_refused(keep_rate):
    with pytest.raises(TypeError, match=r"DynamicViT.keep_rate must be a number in \(0, 1\], got "):
        rv.DynamicViT(keep_rate=keep_rate)


@pytest.mark.parametrize("layers, kind, message", [
    ((3, 3), ValueError, r"DynamicViT.layers must not repeat a block, got \[3\]"),
    ((-1,), ValueError, r"DynamicViT.layers must be block indices >= 0, got -1"),
    ((2.0,), TypeError, r"DynamicViT.layers must hold block indices \(ints\), got 2.0"),
    ((), ValueError, r"DynamicViT.layers is empty"),
])
def test_bad_layers_are_refused(layers, kind, message):
    with pytest.raises(kind, match=message):
        rv.DynamicViT(layers=layers)


def test_fields_are_frozen_and_the_declared_capabilities():
    method = rv.DynamicViT(keep_rate=1, layers=[1, 2])
    assert method.keep_rate == 1.0 and method.layers == (1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        method.keep_rate = 0.5
    assert method.has_keep_rate and method.owns_modules and not method.needs_class_token
    assert rv.DynamicViT().reduction_layers(12) == (3, 6, 9)
    with pytest.raises(ValueError, match=r"DynamicViT.layers=\(5,\) has block 5, outside this model's blocks 0..3"):
        rv.apply(tiny_vit(), rv.DynamicViT(layers=(5,)))


def test_the_kept_counts_compound_on_the_original_tokens_as_the_authors():
    # int(196 * 0.7 ** (i + 1)): 137, 96, 67; at 0.5: 98, 49, 24
    assert token_counts(rv.DynamicViT(0.7), 12, 196) == [196] * 3 + [137] * 3 + [96] * 3 + [67] * 3
    assert token_counts(rv.DynamicViT(0.5), 12, 196)[-1] == 24
    assert token_counts(rv.DynamicViT(0.01), 4, 16) == [16, 1, 1, 1]                # at least one token
    assert rv.method_at("dynamicvit", depth=12, num_patches=196, keep_rate=0.5) == rv.DynamicViT(0.5)
    assert rv.methods.registry.method_class("DynamicViT") is rv.DynamicViT


# --------------------------------------------------------------------------------------- the modules, the model

def test_apply_adds_the_predictors_and_remove_leaves_the_model_bit_for_bit():
    model = tiny_vit(depth=4)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    parameters = sum(p.numel() for p in model.parameters())
    images = images_for(model)
    untouched = run(model, images)
    rng = torch.get_rng_state()
    rv.apply(model, rv.DynamicViT(keep_rate=0.7))
    assert torch.equal(torch.get_rng_state(), rng)                       # the predictors' init draws nothing global
    predictors = model.retokviz_modules
    dim = 48
    per_predictor = (2 * dim) + (dim * dim + dim) + (dim * dim // 2 + dim // 2) + (dim // 2 * dim // 4 + dim // 4) \
        + (dim // 4 * 2 + 2)
    assert sum(p.numel() for p in model.parameters()) == parameters + 3 * per_predictor
    assert {key for key in model.state_dict() if key not in before} == {
        f"retokviz_modules.{key}" for key in predictors.state_dict()}
    assert list(model.state_dict())[:len(before)] == list(before)
    rv.apply(model, rv.DynamicViT(keep_rate=0.5))                        # another keep rate: the same predictors
    assert model.retokviz_modules is predictors
    with rv.applied(model, None):                                        # untouched inside, predictors back after
        assert not hasattr(model, "retokviz_modules") and torch.equal(run(model, images), untouched)
    with rv.applied(model, rv.EViT(0.5)):
        assert "retokviz_modules" not in dict(model.named_children())
    assert model.retokviz_modules is predictors
    with pytest.raises(ValueError, match=r"carries modules .* don't fit .*rv.remove\(model\) first"):
        rv.apply(model, rv.DynamicViT(layers=(1, 2)))
    rv.remove(model)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[key], before[key]) for key in before)
    assert torch.equal(run(model, images), untouched)


def test_macs_count_the_predictors_and_the_pruned_blocks():
    model = tiny_vit(depth=4, grid=4)                                     # 16 patches, width 48, blocks 1, 2, 3
    rv.apply(model, rv.DynamicViT(keep_rate=0.7))
    width, patches = 48, 16
    kept = [16, 11, 7, 5]                                                 # int(16 * 0.7 ** i) from block 1 on
    expected = patches * 3 * 16 * 16 * width + width * 10                 # patch embedding, head
    for tokens in kept:
        expected += 12 * (tokens + 1) * width ** 2 + 2 * (tokens + 1) ** 2 * width
    for tokens in kept[:3]:                                               # each predictor sees the tokens present
        expected += tokens * (width ** 2 + width * width // 2 + width // 2 * width // 4 + width // 4 * 2)
    assert rv.count_macs(model) == expected


def test_keep_rate_one_is_the_untouched_model_in_inference_and_training():
    model = tiny_vit("deit3_layerscale", depth=4)
    images = images_for(model)
    untouched = run(model, images)
    model.train()
    torch.manual_seed(0)
    trained_untouched = model(images)
    with rv.applied(model, rv.DynamicViT(keep_rate=1.0)):
        torch.manual_seed(0)
        assert torch.equal(model(images), trained_untouched)
        assert state_of(model).decisions == {}
        model.eval()
        assert torch.equal(run(model, images), untouched)


def test_prefix_tokens_are_never_dropped_and_the_trace_holds_the_keep_scores():
    model = tiny_vit("dinov2_registers", depth=4, grid=4)                 # a class token and 4 registers
    prefix = model.num_prefix_tokens
    rv.apply(model, rv.DynamicViT(keep_rate=0.5))
    seen = {}
    for index, block in enumerate(model.blocks):
        block.register_forward_hook(lambda module, args, out, index=index: seen.__setitem__(("out", index), out))
        block.norm1.register_forward_hook(lambda module, args, out, index=index: seen.__setitem__(("in", index),
                                                                                                    args[0]))
    images = images_for(model, batch=3)
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    check_trace(trace, model, 3)
    for layer, count in zip((1, 2, 3), (8, 4, 2)):                        # int(16 * 0.5 ** (i + 1))
        assert seen[("in", layer)].shape[1] == prefix + count
        assert torch.equal(seen[("in", layer)][:, :prefix], seen[("out", layer - 1)][:, :prefix])
        scores = trace.layers[layer].token_scores
        assert scores.shape == (3, trace.layers[layer - 1].num_tokens) and bool(((scores >= 0) & (scores <= 1)).all())
        statuses = set(trace.layers[layer].status.unique().tolist())
        assert statuses <= {int(rv.Status.KEPT), int(rv.Status.DROPPED)}
    assert [layer.num_tokens for layer in trace.layers] == [16, 8, 4, 2]


def test_a_model_without_a_class_token_is_pruned_too_and_compositions_are_refused():
    model = tiny_vit("deit", depth=4, class_token=False, global_pool="avg")
    rv.apply(model, rv.DynamicViT(keep_rate=0.5))
    assert run(model, images_for(model)).shape == (2, 10)
    with pytest.raises(ValueError, match="DynamicViT is a learned method .* can't be composed with ToMe"):
        rv.apply(tiny_vit(), [rv.DynamicViT(), rv.ToMe(r=2)])


def test_training_decides_without_dropping_and_gradients_reach_the_predictors():
    model = tiny_vit(depth=4)
    rv.apply(model, rv.DynamicViT(keep_rate=0.5))
    model.train()
    logits = model(images_for(model))
    decisions = state_of(model).decisions
    assert sorted(decisions) == [1, 2, 3] and all(d.shape == (2, 16) for d in decisions.values())
    assert bool((decisions[3] <= decisions[2]).all() and (decisions[2] <= decisions[1]).all())  # dropped stays so
    (logits.sum() + sum(d.sum() for d in decisions.values())).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.retokviz_modules.parameters())


def test_a_checkpoint_round_trip_keeps_the_predictors(tmp_path):
    model = tiny_vit(depth=4)
    rv.apply(model, rv.DynamicViT(keep_rate=0.6))
    with torch.no_grad():
        for parameter in model.retokviz_modules.parameters():
            parameter.add_(0.1)
    images = images_for(model)
    expected = run(model, images)
    kwargs = dict(num_classes=10, img_size=64, patch_size=16, embed_dim=48, depth=4, num_heads=3)
    rv.export_checkpoint(model, tmp_path / "dv.safetensors", recipe={"test_acc": 0.5},
                         model_name="deit_small_patch16_224", model_kwargs=kwargs)
    loaded = rv.load_checkpoint(tmp_path / "dv.safetensors")
    assert rv.method_of(loaded) == rv.DynamicViT(keep_rate=0.6)
    assert torch.equal(run(loaded, images), expected)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


# ------------------------------------------------------------------------------------------------------ training

def test_train_with_the_teacher_and_resume_bit_for_bit(tmp_path):
    from test_train import KilledAfter, Killed, assert_same_weights, stable, tiny_config, tiny_data, tiny_model

    method = rv.DynamicViT(keep_rate=0.5)
    config = tiny_config(epochs=2, keep_warmup_epochs=0, keep_decay_epochs=0)
    data, test = tiny_data(48, 0), tiny_data(16, 1)
    whole = tiny_model()
    uninterrupted = train_quietly(whole, data, test, config, method)
    assert whole.retokviz_modules is not None and rv.method_of(whole) == method
    assert not torch.equal(whole.retokviz_modules[0].in_conv[1].weight,
                           rv.DynamicViT().make_modules(tiny_model())[0].in_conv[1].weight)   # trained

    out = tmp_path / "run"
    interrupted = dataclasses.replace(config, out_dir=out)
    with pytest.raises(Killed):                                           # killed 20 images into epoch 2
        train_quietly(tiny_model(), KilledAfter(data, 48 + 20), test, interrupted, method)
    resumed_model = tiny_model()                                          # the same initial model: the teacher
    resumed = train_quietly(resumed_model, data, test, interrupted, method, resume=True)
    assert_same_weights(resumed_model, whole)
    assert stable(resumed.history) == stable(uninterrupted.history)


def train_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rv.train(*args, **kwargs)


def test_the_command_line_trains_dynamicvit(tmp_path, capsys):
    from test_train import TINY_DATA, TINY_MODEL, faked_clutter
    from retokviz.training.cli import main

    argv = [*TINY_MODEL, *TINY_DATA, "--method", "dynamicvit", "--keep-rate", "0.5", "--epochs", "1",
            "--warmup-epochs", "0", "--keep-warmup-epochs", "0", "--keep-decay-epochs", "0", "--no-progress",
            "--out", str(tmp_path / "run"), "--export", "dv", "--export-dir", str(tmp_path)]
    # from scratch, the teacher would be the untrained model: refused, naming both ways out, before any work
    with faked_clutter(), pytest.raises(SystemExit):
        main(argv)
    assert "give --init CHECKPOINT to fine-tune, or --distill-weight 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with faked_clutter():
        result = main([*argv, "--distill-weight", "0"])
    assert len(result.history) == 1
    loaded = rv.load_checkpoint(tmp_path / "dv.safetensors")
    assert rv.method_of(loaded) == rv.DynamicViT(keep_rate=0.5) and hasattr(loaded, "retokviz_modules")


def test_from_scratch_without_distillation_trains_the_predictors_with_the_ratio_loss_alone():
    from test_train import tiny_config, tiny_data, tiny_model

    model = tiny_model()
    result = train_quietly(model, tiny_data(32, 0), tiny_data(16, 1),
                           tiny_config(epochs=1, warmup_epochs=0, keep_warmup_epochs=0, keep_decay_epochs=0,
                                       distill_weight=0.0),
                           rv.DynamicViT(keep_rate=0.5))
    assert math.isfinite(result.metrics["train_loss"])
    assert not torch.equal(model.retokviz_modules[0].in_conv[1].weight,
                           rv.DynamicViT().make_modules(tiny_model())[0].in_conv[1].weight)   # trained
    with pytest.raises(ValueError, match="distill_weight=0.5 needs a teacher"):
        PruningObjective(model, None, nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match=r"distill_weight must be a number >= 0, got -1"):
        tiny_config(distill_weight=-1)


@pytest.mark.parametrize("scale", [0.01, 1.0])
def test_the_backbone_learns_at_its_scale_of_the_predictors_rate(scale):
    from retokviz.training.loop import _make_optimizer
    from test_train import tiny_config, tiny_model

    model = rv.apply(tiny_model(), rv.DynamicViT(keep_rate=0.5))
    optimizer = _make_optimizer(model, tiny_config(backbone_lr_scale=scale))
    names = {id(p): n for n, p in model.named_parameters()}
    scales = {names[id(p)]: group.get("lr_scale", 1.0) for group in optimizer.param_groups for p in group["params"]}
    assert set(scales) == set(names.values())                            # every parameter, once
    assert {v for k, v in scales.items() if k.startswith("retokviz_modules.")} == {1.0}
    assert {v for k, v in scales.items() if not k.startswith("retokviz_modules.")} == {scale}
    decay = {names[id(p)] for group in optimizer.param_groups if group["weight_decay"] > 0 for p in group["params"]}
    assert "blocks.0.attn.qkv.weight" in decay and "blocks.0.attn.qkv.bias" not in decay
    with pytest.raises(ValueError, match=r"backbone_lr_scale must be a number in \(0, 1\], got 0"):
        tiny_config(backbone_lr_scale=0)


def test_the_learned_scores_are_said_so_in_the_views_and_the_legend():
    from retokviz.views import palette
    from retokviz.views.extract import extract
    from retokviz.views.raster import legend_keys, view_image, view_labels

    model = rv.apply(tiny_vit(depth=4, grid=4), rv.DynamicViT(keep_rate=0.5))
    images = images_for(model, batch=1)
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    arrays = extract(trace, images[0])
    assert arrays.learned_scores
    keys = legend_keys(arrays, "attention", 2)
    labels = [label for label, _, _ in palette.legend("attention", keys)]
    assert "high learned keep score" in labels and not any("class attention" in label for label in labels)
    assert view_labels(True)["attention"] == "learned scores" and view_labels()["attention"] == "attention"
    assert view_image(arrays, "attention", 2).shape[:2] == arrays.picture.shape[:2]
    evit = rv.apply(tiny_vit(depth=4, grid=4), rv.EViT(keep_rate=0.5))
    with rv.record(evit) as trace, torch.no_grad():
        evit(images)
    plain = extract(trace, images[0])
    labels = [label for label, _, _ in palette.legend("attention", legend_keys(plain, "attention", 2))]
    assert not plain.learned_scores and "high class attention" in labels and "high learned keep score" not in labels


def test_a_figure_of_both_kinds_of_scores_names_both_in_its_legend():
    from retokviz.views import palette

    labels = [label for label, _, _ in palette.legend("attention", {"learned", "class attention", "kept"})]
    assert {"high class attention", "high learned keep score"} <= set(labels)
    assert "high learned keep score" not in [label for label, _, _ in palette.legend("attention", {"kept"})]
