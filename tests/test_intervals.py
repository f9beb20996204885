"""Bootstrap intervals over images: how sure a figure measured on N images is."""
from __future__ import annotations

import math

import pytest
import torch

from retokviz.measure.intervals import bootstrap, paired_difference, share


def bernoulli(count, p, seed):
    return torch.rand(count, generator=torch.Generator().manual_seed(seed)) < p


def test_the_interval_of_an_accuracy_holds_it_and_is_as_wide_as_the_binomial_says():
    correct = bernoulli(1000, 0.9, seed=1)
    low, high = bootstrap(share, correct)
    observed = correct.double().mean().item()
    assert low < observed < high
    expected = 2 * 1.96 * math.sqrt(observed * (1 - observed) / 1000)        # the normal approximation's width
    assert high - low == pytest.approx(expected, rel=0.15)
    assert bootstrap(share, correct) == (low, high)                           # the same seed, the same interval
    assert bootstrap(share, correct, seed=1) != (low, high)
    narrow = bootstrap(share, correct, level=0.5)
    assert low < narrow[0] < narrow[1] < high


def test_resampling_is_paired_across_the_tensors_given_together():
    first = bernoulli(500, 0.8, seed=2)
    assert bootstrap(paired_difference, first, first.clone()) == (0.0, 0.0)    # the same images in both
    second = first.clone()
    second[:20] = ~second[:20]                                               # 20 answers of 500 differ
    low, high = bootstrap(paired_difference, first, second)
    independent = [bootstrap(share, first), bootstrap(share, second, seed=7)]
    separate = math.hypot(*(h - l for l, h in independent))
    assert high - low < 0.5 * separate                                        # pairing removes the shared noise


def test_draws_where_the_figure_is_undefined_are_left_out():
    values = torch.tensor([1.0, 0.0, 0.0, 0.0])
    low, high = bootstrap(lambda v: torch.where(v.sum(-1) > 0, v.sum(-1), torch.nan), values)
    assert 1.0 <= low <= high <= 4.0                       # only draws holding the 1 (once or more) remain
    nothing = bootstrap(lambda v: torch.full(v.shape[:1], torch.nan), torch.zeros(3))
    assert all(math.isnan(x) for x in nothing)


@pytest.mark.parametrize("call, message", [
    (lambda: bootstrap(share), r"at least one per-image tensor"),
    (lambda: bootstrap(share, torch.zeros(0, dtype=torch.bool)), r"first dimension B >= 1, got shapes \[\(0,\)\]"),
    (lambda: bootstrap(paired_difference, torch.ones(3), torch.ones(4)), r"got shapes \[\(3,\), \(4,\)\]"),
    (lambda: bootstrap(share, torch.ones(3), resamples=10), r"resamples must be an int >= 100 .* got 10"),
    (lambda: bootstrap(share, torch.ones(3), level=95), r"level must be in \(0, 1\), e.g. 0.95, got 95"),
    (lambda: bootstrap(lambda v: v, torch.ones(3)), r"one value per draw, shape \(2000,\), got \(2000, 3\)"),
])
def test_bad_input_is_refused_with_the_bad_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()
