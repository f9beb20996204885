"""Pictures are read as a person sees them (EXIF rotation, every mode to 8-bit RGB, transparency on white), or
refused with an error that names the file or the bad values; ordinary 8-bit RGB is unchanged, bit for bit."""
from __future__ import annotations

import datetime
import io

import numpy as np
import pytest
import torch
from PIL import Image

from retokviz.images import load_image, prepare
from conftest import tiny_vit


@pytest.fixture(scope="module")
def model():
    return tiny_vit(grid=4)                                 # 64 px input


def _quadrants(height: int = 32, width: int = 48) -> np.ndarray:
    """An asymmetric picture: four flat colours in 16-px blocks (little JPEG loss), none a mirror of another."""
    picture = np.zeros((height, width, 3), dtype=np.uint8)
    picture[:16, :16] = (230, 30, 30)
    picture[:16, 16:] = (30, 200, 40)
    picture[16:, :32] = (40, 40, 220)
    picture[16:, 32:] = (240, 240, 60)
    return picture


# --- ordinary 8-bit RGB: unchanged, bit for bit ----------------------------------------------------------------

def _old_prepare(array: np.ndarray, model) -> tuple[torch.Tensor, np.ndarray]:
    """What prepare did before for an [H, W, 3] array (the golden reference)."""
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    image = Image.fromarray(array).convert("RGB")
    size = model.patch_embed.img_size[0]
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    picture = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(3, 1, 1)
    return ((torch.from_numpy(picture).permute(2, 0, 1) - mean) / std).unsqueeze(0), picture


def test_ordinary_rgb_files_and_arrays_are_unchanged_bit_for_bit(tmp_path, model):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    for suffix in ("png", "jpg"):
        Image.fromarray(array).save(tmp_path / f"a.{suffix}")
        with Image.open(tmp_path / f"a.{suffix}") as reference:
            expected = np.asarray(reference.convert("RGB"))
        loaded = load_image(tmp_path / f"a.{suffix}")
        assert loaded.mode == "RGB" and np.array_equal(np.asarray(loaded), expected), suffix
    floats = rng.random((70, 90, 3))
    for given in (array, floats, floats.astype(np.float32), np.zeros((64, 64, 3)), np.ones((80, 64, 3))):
        tensor, picture = prepare(given, model)
        old_tensor, old_picture = _old_prepare(given, model)
        assert torch.equal(tensor, old_tensor) and np.array_equal(picture, old_picture)


# --- files --------------------------------------------------------------------------------------------------

def test_a_16_bit_png_is_scaled_by_257_not_white(tmp_path):
    gradient = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (16, 1))
    Image.fromarray(gradient).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    loaded = np.asarray(load_image(tmp_path / "deep.png"))
    expected = (gradient / 257.0).round().astype(np.uint8)
    assert loaded.shape == (16, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], expected)
    assert loaded[0, 0, 0] == 0 and loaded[0, -1, 0] == 255


def test_a_32_bit_integer_tiff_is_scaled_by_its_bit_depth(tmp_path):
    values = np.array([[0, 2 ** 30, 2 ** 31 - 1]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "wide.tif")
    assert Image.open(tmp_path / "wide.tif").mode == "I"
    assert np.asarray(load_image(tmp_path / "wide.tif"))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("top", [1.0, 255.0])
def test_a_float_tiff_is_read_as_0_to_1_or_0_to_255(tmp_path, top):
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32) * top
    Image.fromarray(values).save(tmp_path / "float.tif")
    assert np.asarray(load_image(tmp_path / "float.tif"))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("values", [[0.0, np.nan], [0.0, 300.0], [-1.0, 0.5]])
def test_a_float_tiff_out_of_range_is_refused_naming_the_file(tmp_path, values):
    Image.fromarray(np.array([values], dtype=np.float32)).save(tmp_path / "odd.tif")
    with pytest.raises(OSError, match=r"odd\.tif.*(NaN|0\.\.1 or 0\.\.255)"):
        load_image(tmp_path / "odd.tif")


# EXIF orientation -> what a viewer shows of the stored pixels.
SHOWN = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),                          # rotate 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),         # mirror, then rotate 90 clockwise
    8: lambda a: np.rot90(a, 1),                           # rotate 90 counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(SHOWN))
def test_an_exif_rotated_jpeg_is_turned_upright(tmp_path, orientation):
    stored = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "turned.jpg", quality=95, exif=exif.tobytes())
    loaded = np.asarray(load_image(tmp_path / "turned.jpg")).astype(int)
    expected = SHOWN[orientation](stored).astype(int)
    assert loaded.shape == expected.shape
    assert np.abs(loaded - expected).mean() < 6, orientation


def test_a_cmyk_jpeg_comes_out_in_its_colours(tmp_path):
    rgb = _quadrants()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    loaded = np.asarray(load_image(tmp_path / "print.jpg")).astype(int)
    assert loaded.shape == rgb.shape and np.abs(loaded - rgb.astype(int)).mean() < 6


def test_a_palette_png_with_transparency_is_composited_on_white(tmp_path):
    indices = np.zeros((8, 8), dtype=np.uint8)
    indices[:, 4:] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 200, 20, 20] + [0] * 762)   # 0: black, 1: red
    image.save(tmp_path / "pal.png", transparency=0)           # black is transparent
    loaded = np.asarray(load_image(tmp_path / "pal.png"))
    assert (loaded[:, :4] == 255).all()                          # transparent: white, not the palette's black
    assert (loaded[:, 4:] == (200, 20, 20)).all()
    image.save(tmp_path / "opaque.png")                          # without transparency: the palette's colours
    assert (np.asarray(load_image(tmp_path / "opaque.png"))[:, :4] == 0).all()


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_composited_on_white(tmp_path, mode):
    grey = np.full((4, 6), 40, dtype=np.uint8)
    alpha = np.zeros((4, 6), dtype=np.uint8)
    alpha[:, 2:4], alpha[:, 4:] = 128, 255                       # transparent, half, opaque
    bands = [grey, alpha] if mode == "LA" else [grey, grey, grey, alpha]
    Image.merge(mode, [Image.fromarray(band) for band in bands]).save(tmp_path / "a.png")
    loaded = np.asarray(load_image(tmp_path / "a.png")).astype(int)
    assert (loaded[:, :2] == 255).all() and (loaded[:, 4:] == 40).all()
    assert (np.abs(loaded[:, 2:4] - (40 * 128 + 255 * 127) / 255) <= 1).all()


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_bilevel_files_are_grey(tmp_path, mode):
    grey = np.tile(np.array([0, 255, 0, 255], dtype=np.uint8), (4, 1))
    Image.fromarray(grey).convert(mode).save(tmp_path / "g.png")
    loaded = np.asarray(load_image(tmp_path / "g.png"))
    assert loaded.shape == (4, 4, 3) and all((loaded[..., c] == grey).all() for c in range(3))


@pytest.mark.parametrize("side", [40, 50])                      # over the limit (a warning), over twice (an error)
def test_a_decompression_bomb_is_refused_naming_file_pixels_and_limit(tmp_path, monkeypatch, side):
    Image.new("RGB", (side, side)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(OSError) as raised:
        load_image(tmp_path / "bomb.png")
    message = str(raised.value)
    assert "bomb.png" in message and f"{side * side} pixels" in message and "limit of 1000 pixels" in message


def test_a_corrupt_file_is_refused_naming_it(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(OSError, match=r"broken\.png"):
        load_image(tmp_path / "broken.png")


# --- arrays -------------------------------------------------------------------------------------------------

def test_a_float_array_in_0_to_255_is_refused_not_whitened(model):
    with pytest.raises(ValueError, match=r"0\.\.1, found values in 0\.\.255.*divide it by 255"):
        prepare(np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3), model)
    with pytest.raises(ValueError, match=r"0\.\.1, found values in -0\.5\.\.0\.5"):
        prepare(np.full((64, 64, 3), 0.5) - np.eye(64)[..., None], model)


def test_a_nan_array_is_refused(model):
    array = np.full((64, 64, 3), 0.5)
    array[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN.*0\\.\\.1"):
        prepare(array, model)


def test_uint16_and_wider_integer_arrays_are_scaled_not_whitened(model):
    array = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    reference, _ = prepare(array, model)
    assert torch.equal(prepare(array.astype(np.uint16) * 257, model)[0], reference)
    assert torch.equal(prepare(array.astype(np.int64), model)[0], reference)
    with pytest.raises(ValueError, match=r"int64 must be in 0\.\.255, found values in 0\.\.300"):
        prepare(np.linspace(0, 300, 64 * 64 * 3).astype(np.int64).reshape(64, 64, 3), model)


def test_a_greyscale_array_is_grey(model):
    grey = np.random.default_rng(2).random((64, 64))
    tensor, picture = prepare(grey, model)
    assert torch.equal(tensor, prepare(np.repeat(grey[..., None], 3, axis=2), model)[0])
    assert torch.equal(tensor, prepare(grey[..., None], model)[0])
    assert np.array_equal(picture[..., 0], picture[..., 2])


def test_an_rgba_array_is_composited_on_white_like_an_rgba_file(tmp_path, model):
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., :3] = 40
    rgba[:, 32:, 3] = 255                                          # left half transparent
    _, picture = prepare(rgba, model)
    assert (picture[:, :30] == 1.0).all() and np.allclose(picture[:, 34:], 40 / 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(prepare(tmp_path / "a.png", model)[1], picture)
    _, from_floats = prepare(rgba / 255.0, model)
    assert np.allclose(from_floats, picture, atol=1 / 255)


# --- the explorer's upload ----------------------------------------------------------------------------------

@pytest.fixture
def ex():
    pytest.importorskip("ipywidgets")
    from retokviz.explorer import explore

    return explore(tiny_vit("deit", depth=3, grid=4), torch.randn(2, 3, 64, 64), keep_rate=0.5)


def _upload(ex, name: str, data: bytes) -> None:
    ex.upload.value = ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
                        "last_modified": datetime.datetime.now()},)


def test_an_unreadable_upload_is_said_in_the_widget_not_raised(ex, tmp_path, monkeypatch):
    ex.set(method="tome", keep_rate=0.4, image=1)
    controls = (ex.method.value, ex.keep_rate.value, ex.image.value, ex.image.options, ex.view.value, ex.block.value)
    _upload(ex, "bad.png", b"\x89PNG\r\n\x1a\ncorrupt")                  # corrupt: no exception escapes
    assert "could not read bad.png" in ex.message.value
    assert (ex.method.value, ex.keep_rate.value, ex.image.value, ex.image.options, ex.view.value,
            ex.block.value) == controls
    assert ex.upload.value == ()                                      # the counter is back to 0
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50)).save(buffer, "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    _upload(ex, "huge.png", buffer.getvalue())                       # a bomb: said, not raised
    assert "could not read huge.png" in ex.message.value and "2500 pixels" in ex.message.value
    assert ex.image.options == controls[3] and ex.upload.value == ()
    monkeypatch.undo()
    _upload(ex, "mine.png", buffer.getvalue())                       # a good one afterwards: shown, message cleared
    assert ex.image.value == 2 and ex.image.options[-1] == ("2: mine.png", 2)
    assert "could not read" not in ex.message.value and ex.upload.value == ()
