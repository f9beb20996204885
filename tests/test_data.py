"""The offline data: clutter is deterministic, split by digit, masked exactly; photos and image folders load."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from retokviz import data


@pytest.fixture(scope="module")
def clutter() -> data.Clutter:
    return data.render_clutter(160, seed=0, split="test")


def test_same_seed_same_tensors_and_a_longer_run_extends_a_shorter_one():
    first, again, longer = (data.make_clutter(n, 5, "train") for n in (6, 6, 9))
    for a, b, c in zip(first, again, longer):
        assert torch.equal(a, b)
        assert torch.equal(a, c[:6])


def test_seed_and_split_change_every_background_not_just_the_digit():
    clutter = data.render_clutter(6, 1, "train")
    for other in (data.render_clutter(6, 2, "train"), data.render_clutter(6, 1, "test")):
        assert not torch.equal(clutter.masks, other.masks)
        same = (clutter.backdrop == other.backdrop).flatten(1).float().mean(1)
        assert bool((same < 0.05).all()), same


def test_splits_use_disjoint_digits_and_test_images_only_test_digits(clutter):
    train, test = data.source_indices("train"), data.source_indices("test")
    assert not set(train) & set(test)
    assert sorted(set(train) | set(test)) == list(range(1797))
    assert 0.25 < len(test) / 1797 < 0.35
    assert set(clutter.sources.tolist()) <= set(test)
    assert torch.equal(clutter.labels, torch.from_numpy(load_digits().target[clutter.sources.numpy()]))


def test_shapes_dtypes_and_imagenet_normalisation(clutter):
    images, labels, masks = data.make_clutter(4, 0, "test", image_size=64)
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    assert labels.shape == (4,) and labels.dtype == torch.long
    assert masks.shape == (4, 64, 64) and masks.dtype == torch.bool
    images, _, _ = data.make_clutter(8, 0, "test")
    pictures = clutter.pictures()[:8]
    assert float(pictures.min()) >= 0 and float(pictures.max()) <= 1
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))
    torch.testing.assert_close(images * std + mean, pictures)
    torch.testing.assert_close(data.denormalize(images), pictures)


def test_the_image_is_the_digit_colour_exactly_on_the_mask_and_the_backdrop_elsewhere(clutter):
    images, _, masks = data.make_clutter(12, 0, "test")
    pictures = data.denormalize(images)
    assert torch.equal(masks, clutter.masks[:12])
    for picture, mask, colour, backdrop in zip(pictures, masks, clutter.colours, clutter.backdrop):
        torch.testing.assert_close(picture[:, mask], colour[:, None].expand(3, int(mask.sum())), atol=1e-5, rtol=0)
        torch.testing.assert_close(picture[:, ~mask], backdrop[:, ~mask], atol=1e-5, rtol=0)
        # The digit stands out from what it covers (so a mask off by a pixel fails the two checks above).
        luma = torch.tensor([0.299, 0.587, 0.114])
        assert abs(float(colour @ luma - (luma @ backdrop[:, mask]).mean())) > 0.2


def _outline(ink: torch.Tensor) -> torch.Tensor:
    """[h, w] ink -> [16, 16]: its bounding box (ink > 0.45) resized, to compare shapes of any size."""
    rows, cols = (ink > 0.45).any(1).nonzero(), (ink > 0.45).any(0).nonzero()
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1].float()
    return F.interpolate(crop[None, None], size=(16, 16), mode="area").flatten()


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (a.norm() * b.norm() + 1e-6))


def test_the_mask_has_the_shape_of_its_source_digit(clutter):
    ink = torch.from_numpy(load_digits().images / 16.0)
    own, transposed, shuffled = [], [], []
    for index, (mask, source) in enumerate(zip(clutter.masks[:40], clutter.sources)):
        digit = _outline(ink[source])
        own.append(_correlation(_outline(mask), digit))
        transposed.append(_correlation(_outline(mask.T), digit))
        shuffled.append(_correlation(_outline(clutter.masks[(index + 1) % 40]), digit))
    assert np.mean(own) > 0.5
    assert np.mean(own) > np.mean(transposed) + 0.3 and np.mean(own) > np.mean(shuffled) + 0.3


def test_the_digit_touches_a_minority_of_patches_and_labels_cover_every_class(clutter):
    patches = data.patch_mask(clutter.masks)
    assert patches.shape == (160, 8, 8)
    share = patches.float().mean(dim=(1, 2))
    assert 0.12 < float(share.mean()) < 0.35
    assert bool((share > 0).all()) and bool((share < 0.5).all())
    assert set(clutter.labels.tolist()) == set(range(len(data.CLASSES)))


def test_patch_mask_marks_the_patch_of_each_pixel():
    masks = torch.zeros(2, 64, 32, dtype=torch.bool)
    masks[0, 17, 31] = masks[1, 63, 0] = True
    patches = data.patch_mask(masks)
    assert patches.shape == (2, 4, 2)
    assert patches.nonzero().tolist() == [[0, 1, 1], [1, 3, 0]]
    with pytest.raises(ValueError, match="40 x 32"):
        data.patch_mask(torch.zeros(1, 40, 32, dtype=torch.bool))


@pytest.mark.parametrize("masks, patch_size, message", [
    (torch.zeros(1, 32, 32, dtype=torch.bool), 0, "patch_size must be an int >= 1, got 0"),
    (torch.zeros(1, 32, 32, dtype=torch.bool), True, "patch_size must be an int >= 1, got True"),
    (torch.zeros(1, 32, 32, dtype=torch.bool), 8.0, "patch_size must be an int >= 1, got 8.0"),
    (torch.zeros(32, 32, dtype=torch.bool), 16, r"masks must be a tensor \[n, H, W\], got shape \(32, 32\)"),
    (np.zeros((1, 32, 32), dtype=bool), 16, r"masks must be a tensor \[n, H, W\], got ndarray"),
])
def test_patch_mask_names_a_bad_argument(masks, patch_size, message):
    with pytest.raises(ValueError, match=message):
        data.patch_mask(masks, patch_size)


def test_the_clutter_classes_are_known_without_making_data():
    assert data.ClutterDataset.classes == list(data.CLASSES)


def test_clutter_dataset_yields_what_make_clutter_makes():
    dataset = data.ClutterDataset(5, 3, "train", image_size=64)
    images, labels, masks = data.make_clutter(5, 3, "train", image_size=64)
    assert len(dataset) == 5
    image, label = dataset[4]
    assert torch.equal(image, images[4]) and int(label) == int(labels[4])
    assert torch.equal(dataset.masks, masks)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=100), "image_size must be an int, a multiple of 16 and >= 64, got 100"),
    (dict(image_size=48), "got 48"),
    (dict(image_size=True), "got True"),
    (dict(image_size=64.0), "got 64.0"),
    (dict(n=0), "n must be an int >= 1, got 0"),
    (dict(n=-3), "got -3"),
    (dict(n=True), "n must be an int >= 1, got True"),
    (dict(n=2.0), "n must be an int >= 1, got 2.0"),
    (dict(split="val"), "one of \\('train', 'test'\\), got 'val'"),
    (dict(seed=-1), "seed must be an int >= 0, got -1"),
    (dict(seed=True), "seed must be an int >= 0, got True"),
    (dict(seed="0"), "seed must be an int >= 0, got '0'"),
    (dict(progress="yes"), "progress must be True or False, got 'yes'"),
])
@pytest.mark.parametrize("make", [data.make_clutter, data.render_clutter, data.ClutterDataset])
def test_bad_arguments_name_the_value(make, kwargs, message):
    arguments = dict(n=2, seed=0, split="test", image_size=64) | kwargs
    with pytest.raises(ValueError, match=message):
        make(**arguments)


def test_numpy_ints_are_ints():
    images, _, _ = data.make_clutter(np.int64(2), np.int32(0), image_size=np.int64(64))
    assert torch.equal(images, data.make_clutter(2, 0, image_size=64)[0])


def test_sample_photos_are_square_normalised_tensors():
    photos = data.sample_photos(size=32)
    assert sorted(photos) == sorted(data.PHOTOS) == ["astronaut", "chelsea", "coffee", "motorcycle", "rocket"]
    assert all(photo.shape == (3, 32, 32) and photo.dtype == torch.float32 for photo in photos.values())
    tensor, picture = data.sample_photo("chelsea", size=48)
    assert picture.shape == (48, 48, 3) and picture.dtype == np.uint8
    torch.testing.assert_close(data.denormalize(tensor), torch.from_numpy(picture).permute(2, 0, 1) / 255.0)
    assert not torch.equal(photos["coffee"], photos["rocket"])


def test_an_unknown_photo_lists_the_bundled_ones():
    with pytest.raises(ValueError, match="'lena'.*astronaut, chelsea, coffee, motorcycle, rocket"):
        data.sample_photo("lena")


@pytest.mark.parametrize("size", [0, -5, True, 32.0])
def test_a_bad_photo_size_is_named(size):
    with pytest.raises(ValueError, match=rf"size must be an int >= 1, got {size!r}"):
        data.sample_photo("chelsea", size)
    with pytest.raises(ValueError, match=rf"size must be an int >= 1, got {size!r}"):
        data.sample_photos(size)


def _write_images(folder, count: int, colour: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (40, 40), colour).save(folder / f"{index}.jpg")


def test_image_folder_loads_classes_with_timm_transforms(tmp_path):
    for split in ("train", "val"):
        _write_images(tmp_path / split / "cat", 3, (200, 30, 30))
        _write_images(tmp_path / split / "dog", 2, (30, 30, 200))
    train = data.image_folder(tmp_path, "train", image_size=32, auto_augment="rand-m9-mstd0.5-inc1")
    val = data.image_folder(tmp_path, "val", image_size=32)
    assert train.classes == val.classes == ["cat", "dog"]
    assert sorted(train.targets) == [0, 0, 0, 1, 1]
    assert "RandAugment" in repr(train.transform) and "RandAugment" not in repr(val.transform)
    image, label = val[4]
    assert image.shape == (3, 32, 32) and label == 1
    blue = torch.tensor([30, 30, 200]) / 255.0
    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN), torch.tensor(IMAGENET_DEFAULT_STD)
    torch.testing.assert_close(image.mean(dim=(1, 2)), (blue - mean) / std, atol=0.1, rtol=0)
    assert train[0][0].shape == (3, 32, 32)


def test_image_folder_errors_name_the_path_and_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no image folder at {tmp_path / 'missing'}"):
        data.image_folder(tmp_path / "missing")
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no split folder .*val \(found \['train'\]\).*<class>/<image>"):
        data.image_folder(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"no class folders in .*train"):
        data.image_folder(tmp_path, "train")
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(FileNotFoundError, match=r"cat.*<class>/<image>"):
        data.image_folder(tmp_path, "train")


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=0), "image_size must be an int >= 1, got 0"),
    (dict(image_size=True), "image_size must be an int >= 1, got True"),
    (dict(training="yes"), "training must be True or False, got 'yes'"),
    (dict(split=""), "split must be the name of a folder in root, e.g. 'train' or 'val', got ''"),
    (dict(auto_augment=5), "auto_augment must be None or a timm policy .*, got 5"),
    (dict(auto_augment="fancy"), "auto_augment='fancy' is not a timm policy"),
    (dict(split="val", auto_augment="rand-m9-mstd0.5-inc1"), "applies to the training transform, not to split 'val'"),
    (dict(root=3), "root must be a path"),
])
def test_image_folder_names_a_bad_argument(tmp_path, kwargs, message):
    for split in ("train", "val"):
        _write_images(tmp_path / split / "cat", 1, (200, 30, 30))
    with pytest.raises(ValueError, match=message):
        data.image_folder(**(dict(root=tmp_path) | kwargs))


@pytest.mark.parametrize("damage", ["truncated", "not an image"])
def test_a_corrupt_image_names_its_file(tmp_path, damage):
    _write_images(tmp_path / "train" / "cat", 2, (200, 30, 30))
    bad = tmp_path / "train" / "cat" / "1.jpg"
    whole = bad.read_bytes()
    bad.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else b"not an image")
    folder = data.image_folder(tmp_path, "train", image_size=32)
    assert folder[0][0].shape == (3, 32, 32)
    with pytest.raises(OSError, match=rf"can't read the image {bad}: .*corrupt, truncated or not an image"):
        folder[1]
