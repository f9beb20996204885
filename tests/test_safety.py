"""The core under bad input and faults: clear errors before anything changes, and nothing left behind."""
from __future__ import annotations

import copy

import pytest
import torch

import retokviz as rv
from conftest import images_for, run, tiny_vit

METHODS = [rv.EViT(0.5), rv.EViT(0.5, fuse=False), rv.ImagePiece(0.5), rv.ImagePiece(0.5, fuse=True), rv.ToMe(r=3),
           [rv.ImagePiece(0.7), rv.ToMe(r=2)]]


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("method", METHODS, ids=repr)
def test_an_empty_batch_gives_an_empty_output_like_timm(method):
    model = tiny_vit(grid=4)
    empty = torch.randn(0, 3, 64, 64)
    expected = run(model, empty)
    rv.apply(model, method)
    with rv.record(model) as trace, torch.no_grad():
        out = model(empty)
    assert out.shape == expected.shape == (0, 10)
    assert all(layer.owner.shape == (0, 16) for layer in trace.layers)


def test_count_macs_with_a_bad_image_size_leaves_no_hook():
    model = rv.apply(tiny_vit(), rv.EViT(0.5))
    before = hook_count(model)
    for bad in (-16, 0, (16,), "64", True, (64, -1)):
        with pytest.raises(ValueError, match="image_size must be"):
            rv.count_macs(model, image_size=bad)
        assert hook_count(model) == before
    assert rv.count_macs(model, image_size=64) > 0 and hook_count(model) == before


def test_a_tiny_keep_rate_keeps_one_token_and_records():
    model = rv.apply(tiny_vit(), rv.EViT(keep_rate=1e-12, fuse=False))
    with rv.record(model) as trace, torch.no_grad():
        model(images_for(model))
    assert [layer.num_tokens for layer in trace.layers] == [16, 1, 1, 1]
    assert rv.EViT(keep_rate=1e-12).num_kept(5) == 1 and rv.ImagePiece(keep_rate=1e-12).num_kept(5) == 1


@pytest.mark.parametrize("cls", [rv.EViT, rv.ImagePiece])
def test_empty_layers_are_refused(cls):
    with pytest.raises(ValueError, match="layers is empty"):
        cls(layers=())


def test_forward_intermediates_is_refused_where_tokens_are_reduced_and_timms_own_otherwise():
    model = tiny_vit()
    images = images_for(model)
    with torch.no_grad():
        untouched = model.forward_intermediates(images)
    rv.apply(model, rv.EViT(0.5))
    with pytest.raises(RuntimeError, match="forward_intermediates reshapes"):
        model.forward_intermediates(images)
    rv.apply(model, rv.EViT(1.0))
    with torch.no_grad():
        same = model.forward_intermediates(images)
    assert torch.equal(same[0], untouched[0])
    assert all(torch.equal(a, b) for a, b in zip(same[1], untouched[1]))
    rv.remove(model)
    assert "forward_intermediates" not in model.__dict__


def test_a_deep_copy_made_while_recording_is_not_being_recorded():
    model = rv.apply(tiny_vit(), rv.EViT(0.5))
    hooks = hook_count(model)
    with rv.record(model):
        twin = copy.deepcopy(model)
    assert twin._retokviz.recorder is None
    with rv.record(twin) as trace, torch.no_grad():
        twin(images_for(twin))
    assert len(trace.layers) == 4
    rv.remove(twin)  # removes the copy's hooks, not the original's
    assert hook_count(model) == hooks and hook_count(twin) == 0
    with rv.record(model) as trace, torch.no_grad():
        model(images_for(model))
    assert trace.layers[1].num_tokens == 9


@pytest.mark.parametrize("shape, words", [((3, 64, 64), r"\[B, 3, 64, 64\]"), ((1, 1, 64, 64), r"\[B, 3, 64, 64\]"),
                                           ((1, 3, 48, 64), r"\[B, 3, 64, 64\]"), ((2, 3, 64), r"\[B, 3, 64, 64\]")])
def test_images_of_the_wrong_shape_are_refused_naming_what_fits(shape, words):
    model = rv.apply(tiny_vit(), rv.EViT(0.5))
    with pytest.raises(ValueError, match=words):
        model(torch.randn(*shape))


def test_a_dynamic_size_model_names_the_multiples_it_takes():
    model = rv.apply(tiny_vit(dynamic_img_size=True), rv.EViT(0.5))
    assert run(model, torch.randn(1, 3, 32, 80)).shape == (1, 10)
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.randn(1, 3, 40, 64))


def test_the_coherence_stem_applied_twice_changes_nothing():
    model = tiny_vit()
    rv.use_coherence_stem(model)
    stem = model.patch_embed
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert rv.use_coherence_stem(model) is model and model.patch_embed is stem
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert run(model, images_for(model)).shape == (2, 10)


def test_applied_restores_the_previous_method_also_on_error():
    model = rv.apply(tiny_vit(), rv.EViT(0.7))
    hooks = hook_count(model)
    with rv.applied(model, rv.ToMe(r=2)):
        assert rv.method_of(model) == rv.ToMe(r=2)
    assert rv.method_of(model) == rv.EViT(0.7) and hook_count(model) == hooks
    with pytest.raises(KeyError):
        with rv.applied(model, rv.ImagePiece(0.5)):
            raise KeyError("boom")
    assert rv.method_of(model) == rv.EViT(0.7)


def test_applied_on_an_untouched_model_leaves_it_untouched():
    model = tiny_vit()
    images = images_for(model)
    expected = run(model, images)
    with rv.applied(model, rv.EViT(0.5)):
        assert not torch.equal(run(model, images), expected)
    assert rv.method_of(model) is None and hook_count(model) == 0
    assert torch.equal(run(model, images), expected)


def test_applied_refuses_a_bad_method_before_changing_anything():
    model = rv.apply(tiny_vit(), rv.EViT(0.7))
    with pytest.raises(ValueError, match="outside this model's blocks"):
        with rv.applied(model, rv.EViT(0.5, layers=(9,))):
            pass
    assert rv.method_of(model) == rv.EViT(0.7)


def test_the_package_imports_metrics_and_train_stays_the_function():
    import subprocess
    import sys

    code = ("import retokviz as rv, sys; assert 'retokviz.measure.metrics' in sys.modules; "
            "assert callable(rv.metrics.accuracy); assert callable(rv.train)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("method", [rv.ToMe(r=3), [rv.ImagePiece(0.7), rv.ToMe(r=2)]], ids=repr)
def test_merging_runs_in_bfloat16_with_explicit_attention(method):
    """The log-size bias takes the tokens' dtype: timm's explicit attention (fused_attn off) multiplies it in."""
    model = tiny_vit().to(torch.bfloat16)
    for block in model.blocks:
        block.attn.fused_attn = False
    rv.apply(model, method)
    out = run(model, images_for(model).to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out.float()).all())


def test_background_removed_does_not_depend_on_the_batch_size():
    """The issue's reproducer: a composition whose fused token moves differently per image once reported 0.31
    removed at batch size 1 and 0.0 at 32."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=128, depth=4, num_classes=10, embed_dim=48,
                              num_heads=3).eval()
    rv.apply(model, [rv.EViT(0.5, layers=(1,)), rv.ToMe(r=(0, 6, 0, 0))])
    images, _, masks = rv.data.make_clutter(32, 0, "test")
    one = rv.metrics.background_removed(model, images, masks, batch_size=1)
    all_at_once = rv.metrics.background_removed(model, images, masks, batch_size=32)
    assert one == all_at_once and one.removed > 0.2


@pytest.mark.parametrize("method", [rv.EViT(keep_rate=0.7), rv.ImagePiece(0.7), rv.ToMe(r=2),
                                    [rv.ImagePiece(0.7), rv.ToMe(r=2)]], ids=repr)
def test_a_patched_model_pickles_and_round_trips_through_torch_save(method, tmp_path):
    import pickle

    model = rv.apply(tiny_vit(), method)
    images = images_for(model)
    expected = run(model, images)
    hooks = hook_count(model)
    with rv.record(model):   # saved while recording: the copy is not being recorded
        torch.save(model, tmp_path / "model.pt")
    for twin in (torch.load(tmp_path / "model.pt", weights_only=False), pickle.loads(pickle.dumps(model))):
        assert rv.method_of(twin) == rv.method_of(model) and twin._retokviz.recorder is None
        assert hook_count(twin) == hooks
        assert torch.equal(run(twin, images), expected)
        with rv.record(twin) as trace, torch.no_grad():
            twin(images)
        assert len(trace.layers) == 4
        rv.remove(twin)   # removes the copy's hooks, not the original's
        assert hook_count(twin) == 0 and "forward_intermediates" not in twin.__dict__
        assert type(twin.blocks[0]) is not type(model.blocks[0])
        assert torch.equal(run(twin, images), run(tiny_vit(), images))
    assert hook_count(model) == hooks and torch.equal(run(model, images), expected)


def test_integer_images_are_refused_saying_how_to_convert():
    model = rv.apply(tiny_vit(), rv.EViT(0.5))
    pixels = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"torch.uint8.*rv.images.prepare.*\.float\(\)"):
        model(pixels)


@pytest.mark.parametrize("make, named", [(lambda: torch.nn.Linear(2, 2), "Linear"),
                                         (lambda: __import__("timm").create_model("resnet18", pretrained=False),
                                          r"resnet18 \(ResNet\)")], ids=["linear", "resnet18"])
def test_count_macs_refuses_a_model_that_is_not_a_vit_naming_it(make, named):
    model = make()
    with pytest.raises(rv.UnsupportedModelError, match=rf"{named} is not one"):
        rv.count_macs(model)
    assert hook_count(model) == 0


def test_the_training_command_refuses_heads_that_do_not_divide_the_width_before_any_work(tmp_path, capsys,
                                                                                           monkeypatch):
    from retokviz.training import cli

    monkeypatch.setattr(cli, "make_plan", lambda args: pytest.fail("the options were not checked first"))
    with pytest.raises(SystemExit) as exit:
        cli.main(["--embed-dim", "50", "--num-heads", "3", "--out", str(tmp_path / "run")])
    assert exit.value.code == 2
    assert "embed_dim 50 is not divisible by num_heads 3" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
