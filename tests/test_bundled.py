"""The checkpoints shipped in data/: they load offline, without pickle, and reach the accuracy they record."""
from __future__ import annotations

import pytest

import retokviz as rv
from retokviz.checkpoints import MAX_BYTES
from retokviz.evaluate import CHECKPOINTS
from retokviz.metrics import accuracy


@pytest.fixture(scope="module")
def test_set():
    images, labels, _ = rv.data.make_clutter(1000, 0, split="test")   # the trainer's test set (--test-size 1000)
    return images, labels


def bundled():
    return {info.name: info for info in rv.checkpoints()}


def test_every_checkpoint_the_evaluation_needs_is_bundled():
    assert set(CHECKPOINTS.values()) <= set(bundled())


@pytest.mark.parametrize("name", sorted(CHECKPOINTS.values()))
def test_a_bundled_checkpoint_loads_and_measures_what_it_records(name, test_set):
    info = bundled()[name]
    assert info.size_bytes <= MAX_BYTES and info.path.read_bytes()[8:9] == b"{"     # safetensors: a JSON header
    assert {"command", "seed", "device", "seconds", "test_acc"} <= set(info.recipe)
    model = rv.load_checkpoint(name)
    assert not model.training and rv.method_of(model) is not None or name == CHECKPOINTS["none"]
    measured = accuracy(model, *test_set)
    assert measured == pytest.approx(info.accuracy, abs=1e-9), "the recorded accuracy is the one measured"


def test_the_baseline_reaches_95_percent_and_evit_and_imagepiece_at_0_7_stay_within_one_point_of_it():
    # The accuracies are those recorded in the files, which the test above re-measures.
    info = bundled()
    baseline = info[CHECKPOINTS["none"]].accuracy
    assert baseline >= 0.95, f"the baseline reaches {baseline:.1%}; the target is 95 %"
    for method in ("EViT", "ImagePiece"):
        trained = info[CHECKPOINTS[method]]
        assert trained.method["name"] == method and trained.method["keep_rate"] == 0.7
        assert trained.accuracy >= baseline - 0.01, f"{method}: {trained.accuracy:.1%} against {baseline:.1%}"


def test_a_bundled_model_refuses_an_image_size_it_cant_take_and_takes_other_multiples_of_16():
    model = rv.load_checkpoint(CHECKPOINTS["ImagePiece"])
    with pytest.raises(ValueError, match=r"takes images \[B, 3, H, W\] with H a multiple of 16 and W a multiple of 16, got a tensor of shape \(1, 3, 100, 100\)"):
        model(rv.data.make_clutter(1, 0, image_size=128)[0][:, :, :100, :100])
    images, _, _ = rv.data.make_clutter(2, 0, image_size=192)
    assert model(images).shape == (2, 10)
