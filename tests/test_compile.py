"""A patched model under torch.compile: one graph (no graph break) for every method that reduces between attention and
MLP, and the compiled model computes what the eager one does.

What keeps the graph whole: every token count is arithmetic on shapes (no `.item()`, no `nonzero`, no shape read
from values), the class attention is taken from timm's own q/k (forward hooks, which the compiler traces), and the
one warning a method can give (ToMe's clipped r) is not given while compiling. Recording (`rv.record`) is not
needed for any of this, but does not break the graph either.

The graph-break checks use the "eager" backend (tracing only: a second or two each); two checks compile with the
default backend (inductor, C++ kernels built with the system compiler) on small models: plain `torch.compile`, and
`rv.compile_for_inference` (weights frozen, the graph driven from C++).
"""
from __future__ import annotations

import shutil
import warnings

import pytest
import torch

import retokviz as rv
from conftest import images_for, run, tiny_vit

METHODS = {
    "evit": lambda: rv.EViT(keep_rate=0.7, layers=(1, 2)),
    "evit-drop": lambda: rv.EViT(keep_rate=0.5, fuse=False, layers=(1, 2)),
    "imagepiece": lambda: rv.ImagePiece(keep_rate=0.7, layers=(1, 2)),
    "imagepiece-fuse-candidates": lambda: rv.ImagePiece(keep_rate=0.6, layers=(1, 2), candidates=0.5, fuse=True),
    "tome": lambda: rv.ToMe(r=2),
    "tome-spatial": lambda: rv.ToMe(r=2, order="spatial"),
    "imagepiece+tome": lambda: [rv.ImagePiece(keep_rate=0.7, layers=(1, 2)), rv.ToMe(r=1)],
}


def graph_breaks(model: torch.nn.Module, images: torch.Tensor) -> tuple[int, list[str]]:
    """How many times torch.compile would break `model`'s graph on `images`, and why."""
    torch._dynamo.reset()
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(images)
    return explanation.graph_break_count, [str(reason.reason) for reason in explanation.break_reasons]


# every setting on the family with registers (several prefix tokens) and LayerScale; the three methods also on plain
# DeiT and with q/k norm
CASES = [(name, "dinov2_registers") for name in sorted(METHODS)] + [
    (name, family) for name in ("evit", "imagepiece", "tome") for family in ("deit", "qk_norm")]


@pytest.mark.parametrize("name, family", CASES)
def test_every_method_compiles_to_one_graph(name, family):
    model = rv.apply(tiny_vit(family, depth=4), METHODS[name]())
    breaks, reasons = graph_breaks(model, images_for(model))
    assert breaks == 0, reasons


def test_a_model_without_class_token_compiles_to_one_graph_under_tome():
    model = rv.apply(tiny_vit("deit", depth=4, class_token=False, global_pool="avg"), rv.ToMe(r=2))
    breaks, reasons = graph_breaks(model, images_for(model))
    assert breaks == 0, reasons


def test_a_clipped_tome_compiles_to_one_graph_and_says_so_when_run_eagerly():
    method = rv.ToMe(r=9, protect=0.125)   # a setting of its own: 16 patches, 2 protected, at most 7 can merge
    model = rv.apply(tiny_vit("deit", depth=2), method)
    images = images_for(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                         # nothing said while compiling
        breaks, reasons = graph_breaks(model, images)
    assert breaks == 0, reasons
    with pytest.warns(UserWarning, match=r"ToMe\(r=9\) asks block 0 to merge 9 tokens"):
        run(model, images)


def test_recording_does_not_break_the_graph_and_records_what_eager_records():
    model = rv.apply(tiny_vit("deit", depth=4), rv.EViT(keep_rate=0.5, layers=(1, 2)))
    images = images_for(model)
    with rv.record(model) as trace:
        breaks, reasons = graph_breaks(model, images)
    assert breaks == 0, reasons
    with rv.record(model) as eager:
        run(model, images)
    assert [layer.num_tokens for layer in trace.layers] == [layer.num_tokens for layer in eager.layers] == [16, 9, 6, 6]
    assert all(torch.equal(a.owner, b.owner) and torch.equal(a.status, b.status)
               for a, b in zip(trace.layers, eager.layers))


@pytest.mark.parametrize("name", ["evit", "imagepiece", "tome", "imagepiece+tome"])
def test_the_traced_graph_computes_the_eager_output_at_every_batch_size(name):
    """The eager backend runs the captured graph as it is: bit for bit the eager output, also after the batch size
    changes (a recompilation, with the batch dimension symbolic)."""
    model = rv.apply(tiny_vit("deit", depth=4), METHODS[name]())
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    for batch in (2, 3, 5):
        images = images_for(model, batch=batch)
        assert torch.equal(run(compiled, images), run(model, images)), batch


def _has_cpp_compiler() -> bool:
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def test_compile_for_inference_refuses_a_model_in_training_mode_before_compiling():
    model = rv.apply(tiny_vit("deit", depth=2), rv.EViT(keep_rate=0.5, layers=(0,))).train()
    torch._dynamo.reset()
    with pytest.raises(ValueError, match=r"training mode: call model.eval\(\) first"):
        rv.compile_for_inference(model)
    with pytest.raises(TypeError, match="takes a torch.nn.Module, got str"):
        rv.compile_for_inference("deit_small_patch16_224")


INDUCTOR_CASES = {
    # plain torch.compile (inductor) on EViT; rv.compile_for_inference (weights frozen into the graph, the graph driven
    # from C++) on ImagePiece and ToMe composed, the most operators a reduction step has (rankings, matchings, scatters)
    "torch.compile, EViT": (2, lambda: rv.EViT(keep_rate=0.5, layers=(0,)), torch.compile),
    "compile_for_inference, ImagePiece+ToMe": (
        3, lambda: [rv.ImagePiece(keep_rate=0.6, layers=(0, 1)), rv.ToMe(r=1)], rv.compile_for_inference),
}


@pytest.mark.skipif(not _has_cpp_compiler(), reason="no C++ compiler for inductor's CPU kernels")
@pytest.mark.parametrize("case", sorted(INDUCTOR_CASES))
def test_compiled_with_inductor_computes_the_eager_output(case):
    depth, method, compile_model = INDUCTOR_CASES[case]
    model = rv.apply(tiny_vit("deit", depth=depth), method())
    images = images_for(model)
    expected = run(model, images)
    with rv.applied(model, None):
        assert not torch.allclose(run(model, images), expected, atol=1e-3), "the method changes this model's output"
    torch._dynamo.reset()
    with torch._inductor.config.patch(compile_threads=1):     # no pool of compiler processes for one small graph
        compiled = compile_model(model)
        with torch.inference_mode():
            actual = compiled(images)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert compiled is not model and type(model).__name__ == "VisionTransformer" and rv.method_of(model) is not None
