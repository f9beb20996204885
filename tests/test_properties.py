"""Property tests: the trace contract and EViT's token schedule over random configurations."""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import torch
from hypothesis import given, settings, strategies as st

import retokviz as rv
from conftest import check_trace, tiny_vit


@lru_cache(maxsize=None)
def dynamic_vit(depth: int):
    """One tiny ViT per depth that takes any image size (multiples of its 16-pixel patches)."""
    return tiny_vit("deit3_layerscale", depth=depth, dynamic_img_size=True)


@st.composite
def configurations(draw):
    depth = draw(st.integers(1, 6))
    return dict(
        depth=depth,
        keep_rate=draw(st.floats(0.01, 1.0)),
        layers=tuple(draw(st.lists(st.integers(0, depth - 1), unique=True, min_size=1, max_size=depth))),
        fuse=draw(st.booleans()),
        batch=draw(st.integers(1, 3)),
        grid=draw(st.tuples(st.integers(1, 6), st.integers(1, 6)).filter(lambda grid: grid[0] * grid[1] >= 2)),
    )


@settings(max_examples=60, deadline=None)
@given(configurations())
def test_trace_invariants_and_token_schedule(config):
    model = dynamic_vit(config["depth"])
    method = rv.EViT(keep_rate=config["keep_rate"], layers=config["layers"], fuse=config["fuse"])
    rows, cols = config["grid"]
    images = torch.randn(config["batch"], 3, rows * 16, cols * 16)
    rv.apply(model, method)
    with rv.record(model) as trace, torch.no_grad():
        logits = model(images)
    check_trace(trace, model, config["batch"])
    assert trace.grid_size == (rows, cols)
    tokens, schedule = rows * cols, []
    for index in range(config["depth"]):
        if index in config["layers"]:
            kept = max(1, math.ceil(Fraction(config["keep_rate"]) * tokens - Fraction(1, 10**9)))
            tokens = kept + int(config["fuse"] and kept < tokens)
        schedule.append(tokens)
    assert [layer.num_tokens for layer in trace.layers] == schedule
    if all(count == rows * cols for count in schedule):  # nothing reduced: exactly the untouched model
        rv.remove(model)
        with torch.no_grad():
            assert torch.equal(model(images), logits)


@given(st.floats(0.001, 1.0), st.integers(1, 5000))
def test_kept_count_bounds(keep_rate, num_tokens):
    method = rv.EViT(keep_rate=keep_rate)
    kept = method.num_kept(num_tokens)
    assert 1 <= kept <= num_tokens
    assert kept >= keep_rate * num_tokens - 1e-6 and kept - 1 < keep_rate * num_tokens
    assert method.tokens_after(num_tokens, 0) == kept + int(kept < num_tokens)


@st.composite
def merging_configurations(draw):
    depth = draw(st.integers(1, 5))
    kind = draw(st.sampled_from(["tome", "imagepiece", "both"]))
    layers = tuple(draw(st.lists(st.integers(0, depth - 1), unique=True, min_size=1, max_size=depth)))
    imagepiece = rv.ImagePiece(keep_rate=draw(st.floats(0.05, 1.0)), layers=layers,
                               merge_rounds=draw(st.integers(0, 3)), fuse=draw(st.booleans()))
    tome = rv.ToMe(r=draw(st.integers(0, 12)))
    methods = {"tome": tome, "imagepiece": imagepiece, "both": [imagepiece, tome]}[kind]
    grid = draw(st.tuples(st.integers(1, 6), st.integers(1, 6)).filter(lambda grid: grid[0] * grid[1] >= 2))
    return dict(depth=depth, methods=methods, batch=draw(st.integers(1, 3)), grid=grid)


@settings(max_examples=50, deadline=None)
@given(merging_configurations())
def test_trace_invariants_under_merging(config):
    """ToMe, ImagePiece and the two composed: every patch accounted for, and the counts the methods promise."""
    import warnings

    from retokviz.methods.compose import token_counts

    model = dynamic_vit(config["depth"])
    rows, cols = config["grid"]
    images = torch.randn(config["batch"], 3, rows * 16, cols * 16)
    rv.apply(model, config["methods"])
    with warnings.catch_warnings(), rv.record(model) as trace, torch.no_grad():
        warnings.simplefilter("ignore")  # large r is clipped, with a warning
        logits = model(images)
    check_trace(trace, model, config["batch"])
    expected = token_counts(rv.method_of(model), config["depth"], rows * cols)
    assert [layer.num_tokens for layer in trace.layers] == expected
    for layer in trace.layers:  # a token's size is the number of patches it carries
        assert int(layer.sizes.sum(1).min()) == int((layer.owner >= 0).sum(1).min())
    if all(count == rows * cols for count in expected):
        rv.remove(model)
        with torch.no_grad():
            assert torch.equal(model(images), logits)


@st.composite
def any_method(draw, depth: int):
    """A method or a composition of two, as a user could apply it to a `depth`-block model."""
    layers = tuple(draw(st.lists(st.integers(0, depth - 1), unique=True, min_size=1, max_size=depth)))
    keep_rate = draw(st.floats(0.05, 1.0))
    evit = rv.EViT(keep_rate=keep_rate, layers=layers, fuse=draw(st.booleans()))
    imagepiece = rv.ImagePiece(keep_rate=keep_rate, layers=layers, merge_rounds=draw(st.integers(0, 2)),
                               fuse=draw(st.booleans()))
    tome = rv.ToMe(r=tuple(draw(st.lists(st.integers(0, 6), min_size=depth, max_size=depth))))
    return draw(st.sampled_from([evit, imagepiece, tome, [evit, tome], [imagepiece, tome], [tome, evit]]))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_an_images_trace_does_not_depend_on_the_rest_of_its_batch(data):
    """Every method and composition: an image recorded alone has the same owners, statuses and token counts as
    the same image recorded in a batch (a fused token that moves differently per image once broke this)."""
    import warnings

    depth = data.draw(st.integers(1, 4))
    model = dynamic_vit(depth)
    methods = data.draw(any_method(depth))
    rows, cols = data.draw(st.tuples(st.integers(2, 5), st.integers(2, 5)))
    images = torch.randn(4, 3, rows * 16, cols * 16, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 99))))
    rv.apply(model, methods)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # large r is clipped, with a warning
        with rv.record(model) as batch_trace, torch.no_grad():
            model(images)
        for index in range(images.shape[0]):
            with rv.record(model) as alone, torch.no_grad():
                model(images[index:index + 1])
            for block, (together, single) in enumerate(zip(batch_trace.layers, alone.layers)):
                assert together.num_tokens == single.num_tokens, block
                assert torch.equal(together.status[index], single.status[0]), (block, methods)
                assert torch.equal(together.owner[index], single.owner[0]), (block, methods)
