"""The methods by name, their declared capabilities, and the one function that sets a keep rate or a budget."""
from __future__ import annotations

import dataclasses

import pytest

import retokviz as rv
from retokviz.methods import registry
from retokviz.methods.budget import budget, method_at
from retokviz.methods.compose import token_counts
from conftest import tiny_vit


def test_names_map_to_classes_in_any_case():
    assert registry.method_names() == ("evit", "imagepiece", "tome", "dynamicvit")
    assert registry.method_names(compositions=True)[-1] == "imagepiece+tome"
    assert registry.method_class("EViT") is rv.EViT and registry.method_class("tome") is rv.ToMe
    assert registry.method_name([rv.ImagePiece(), rv.ToMe()]) == "imagepiece+tome"
    assert registry.label("imagepiece+tome") == "ImagePiece + ToMe"


@pytest.mark.parametrize("name", ["evitt", "", "Method", 3, "evit+nope"])
def test_an_unknown_name_lists_the_valid_ones(name):
    with pytest.raises(ValueError, match="the methods are evit, imagepiece, tome, dynamicvit"):
        registry.members(name) if isinstance(name, str) and "+" in name else registry.method_class(name)


def test_a_method_of_ones_own_can_be_registered_once():
    @dataclasses.dataclass(frozen=True)
    class Nothing(rv.EViT):
        pass

    assert registry.register(Nothing, "nothing") is Nothing
    try:
        assert registry.method_class("nothing") is Nothing and registry.method_name(Nothing()) == "nothing"
        with pytest.raises(ValueError, match="taken by Nothing"):
            registry.register(rv.EViT, "nothing")
        with pytest.raises(TypeError):
            registry.register(int)
    finally:
        registry._METHODS.pop("nothing"), registry._LABELS.pop("nothing")


def test_capabilities_are_declared_on_the_classes():
    assert rv.EViT.has_keep_rate and rv.ImagePiece.has_keep_rate and not rv.ToMe.has_keep_rate
    assert rv.EViT.needs_class_token and not rv.ToMe().needs_class_token and rv.ToMe(protect=0.5).needs_class_token


@pytest.mark.parametrize("rate", [0.9, 0.7, 0.5, 0.3])
def test_tome_at_a_keep_rate_ends_with_evits_token_budget(rate):
    model = tiny_vit(depth=8, grid=8)
    tome = method_at("tome", model, keep_rate=rate)
    assert isinstance(tome, rv.ToMe) and len(tome.r) == 8
    assert token_counts(tome, 8, 64)[-1] == budget(rate, 8, 64) == token_counts(rv.EViT(rate), 8, 64)[-1]


def test_a_keep_rate_method_keeps_its_other_fields():
    model = tiny_vit()
    template = rv.ImagePiece(0.9, layers=(1, 2), merge_rounds=1, fuse=True)
    assert method_at(template, model, keep_rate=0.4) == dataclasses.replace(template, keep_rate=0.4)
    assert rv.method_at("evit", model, keep_rate=0.5) == rv.EViT(0.5)


def test_a_composition_by_name_gets_a_light_tome_and_the_keep_rate():
    model = tiny_vit(depth=12, grid=14)   # DeiT-S's grid: r = round(0.04 * 196) = 8
    composed = method_at("imagepiece+tome", model, keep_rate=0.6)
    assert composed[0] == rv.ImagePiece(0.6) and composed[1].r == 8 and composed[1].protect == 0.6


def test_a_token_budget_gives_at_most_that_many_tokens():
    model = tiny_vit(depth=4, grid=8)
    for tokens in (1, 5, 20, 40, 64):
        evit = method_at("evit", model, tokens=tokens)
        assert token_counts(evit, 4, 64)[-1] <= max(tokens, budget(1e-4, 4, 64))
        assert token_counts(method_at("tome", model, tokens=tokens), 4, 64)[-1] >= tokens


@pytest.mark.parametrize("kwargs, words", [({}, "exactly one"), ({"keep_rate": 0.5, "tokens": 3}, "exactly one"),
                                            ({"keep_rate": 0}, r"in \(0, 1\]"), ({"tokens": 0}, r"1\.\.16"),
                                            ({"tokens": 17}, r"1\.\.16")])
def test_bad_budgets_are_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        method_at("evit", tiny_vit(), **kwargs)


def test_a_tome_template_keeps_its_order_and_protect_at_a_budget():
    tome = method_at(rv.ToMe(r=10, protect=0.2, order="spatial"), tiny_vit(depth=4, grid=8), keep_rate=0.5)
    assert tome.order == "spatial" and tome.protect == 0.2 and len(tome.r) == 4
