"""The views layer: extracting a trace into arrays, the palette, raster views, static figures and plotly charts."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import retokviz as rv
from retokviz.views.figure import Figure
from retokviz.trace.record import LayerRecord, Status, Trace
from retokviz.views import charts, palette, raster, static
from retokviz.views.extract import TraceArrays, describe_method, extract, lineage, to_uint8
from conftest import tiny_vit

K, M, F, D = (int(s) for s in (Status.KEPT, Status.MERGED, Status.FUSED, Status.DROPPED))
PATCH = 8                     # pixels per patch side in the hand-made traces
GRID = (2, 3)                 # 6 patches: 0 1 2 / 3 4 5


def layer(owner, status, num_tokens, scores=None):
    """A LayerRecord of a batch of two images: `owner` and `status` for image 0; image 1 keeps its first
    `num_tokens` patches and drops the others."""
    owner = torch.tensor([owner, list(range(num_tokens)) + [-1] * (6 - num_tokens)])
    status = torch.tensor([status, [K] * num_tokens + [D] * (6 - num_tokens)])
    if scores is not None:
        scores = torch.tensor([scores, [0.1] * 6], dtype=torch.float32)
    return LayerRecord(num_tokens, owner, status, scores)


def hand_trace(method=rv.EViT(keep_rate=0.5)) -> Trace:
    """Block 0 keeps all; block 1: 0, 1 kept, 2 + 3 merged, 4 fused, 5 dropped; block 2: 0 + 1 and 2 + 3 merged
    (two pieces), 4 and 5 dropped."""
    nan = float("nan")
    return Trace(
        layers=[
            layer([0, 1, 2, 3, 4, 5], [K] * 6, 6),
            layer([0, 1, 2, 2, 3, -1], [K, K, M, M, F, D], 4, scores=[0.5, 0.3, 0.1, 0.05, 0.02, 0.03]),
            layer([0, 0, 1, 1, -1, -1], [M, M, M, M, D, D], 2, scores=[0.4, 0.3, 0.2, 0.2, 0.1, nan]),
        ],
        method=method, num_prefix_tokens=1, grid_size=GRID)


def hand_picture(seed: int = 0) -> np.ndarray:
    """[16, 24, 3] float32, random colours."""
    return np.random.default_rng(seed).random((GRID[0] * PATCH, GRID[1] * PATCH, 3)).astype(np.float32)


def patch_pixels(image: np.ndarray, index: int) -> np.ndarray:
    """[PATCH, PATCH, 3] the pixels of patch `index` of a [16, 24, 3] image."""
    row, col = divmod(index, GRID[1])
    return image[row * PATCH:(row + 1) * PATCH, col * PATCH:(col + 1) * PATCH]


@pytest.fixture
def arrays() -> TraceArrays:
    return extract(hand_trace(), hand_picture())


# --- extraction ---------------------------------------------------------------------------------------------

def test_extract_gives_the_hand_made_arrays(arrays):
    assert arrays.grid == GRID and arrays.picture.shape == (16, 24, 3) and arrays.picture.dtype == np.float32
    assert arrays.status.dtype == np.int8 and arrays.owner.dtype == np.int32 and arrays.pieces.dtype == np.int32
    assert arrays.status.shape == arrays.owner.shape == arrays.pieces.shape == arrays.scores.shape == (3, 2, 3)
    np.testing.assert_array_equal(arrays.status[1].ravel(), [K, K, M, M, F, D])
    np.testing.assert_array_equal(arrays.owner[2].ravel(), [0, 0, 1, 1, -1, -1])
    np.testing.assert_array_equal(arrays.pieces[1].ravel(), [-1, -1, 2, 2, -1, -1])
    np.testing.assert_array_equal(arrays.pieces[2].ravel(), [0, 0, 1, 1, -1, -1])
    assert np.isnan(arrays.scores[0]).all() and np.isnan(arrays.scores[2].ravel()[5])
    np.testing.assert_allclose(arrays.scores[1].ravel(), [0.5, 0.3, 0.1, 0.05, 0.02, 0.03])
    assert [s.tolist() for s in arrays.sizes] == [[1] * 6, [1, 1, 2, 1], [2, 2]]
    assert all(s.dtype == np.int32 for s in arrays.sizes)
    assert arrays.num_tokens.tolist() == [6, 4, 2] and arrays.num_tokens.dtype == np.int32
    assert arrays.reduction_blocks == (1, 2) and arrays.scored_blocks == (1, 2)
    assert arrays.method == "EViT(keep_rate=0.5)" and arrays.mask is None


def test_extract_takes_the_image_index_and_every_picture_form():
    trace, picture = hand_trace(), hand_picture()
    second = extract(trace, picture, image=1)
    assert second.status[2].ravel().tolist() == [K, K, D, D, D, D] and second.reduction_blocks == (1, 2)
    assert extract(Trace(hand_trace().layers, None, 1, GRID), picture).method == "untouched"
    from_uint8 = extract(trace, to_uint8(picture))
    np.testing.assert_allclose(from_uint8.picture, picture, atol=1 / 255)
    normalised = rv.data.normalize(torch.from_numpy(picture).permute(2, 0, 1).contiguous())
    np.testing.assert_allclose(extract(trace, normalised).picture, picture, atol=1e-5)
    batch = torch.stack([torch.zeros_like(normalised), normalised])
    np.testing.assert_allclose(extract(trace, batch, image=1).picture, picture, atol=1e-5)
    mask = np.zeros((16, 24), dtype=bool)
    assert extract(trace, picture, torch.from_numpy(mask)).mask.dtype == bool


def test_extract_errors_name_the_bad_input():
    trace, picture = hand_trace(), hand_picture()
    with pytest.raises(ValueError, match="no patch grid"):
        extract(Trace(trace.layers, trace.method, 1, None), picture)
    with pytest.raises(ValueError, match="empty"):
        extract(Trace(), picture)
    with pytest.raises(IndexError, match=r"0\.\.1 .*got 2"):
        extract(trace, picture, image=2)
    with pytest.raises(ValueError, match=r"17 x 24 pixels.*2 x 3 patch grid"):
        extract(trace, np.zeros((17, 24, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\].*\(16, 24\)"):
        extract(trace, np.zeros((16, 24), dtype=np.float32))
    with pytest.raises(ValueError, match=r"mask must be \[H, W\] = \[16, 24\].*got shape \[8, 8\]"):
        extract(trace, picture, mask=np.zeros((8, 8), dtype=bool))


def test_payload_is_json_with_nan_as_none(arrays):
    payload = arrays.to_payload()
    text = json.dumps(payload, allow_nan=False)
    back = json.loads(text)
    assert back["scores"][0][0][0] is None and back["scores"][2][1][2] is None
    assert back["scores"][1][0][0] == pytest.approx(0.5)
    assert back["status"][1] == [[K, K, M], [M, F, D]] and back["grid"] == [2, 3]
    assert back["sizes"] == [[1] * 6, [1, 1, 2, 1], [2, 2]] and back["method"] == "EViT(keep_rate=0.5)"
    assert back["picture_png"].startswith("data:image/png;base64,") and len(back["picture"]) == 16
    assert back["status_names"] == ["kept", "merged", "fused", "dropped"] and back["mask"] is None
    json.dumps(palette.to_payload(), allow_nan=False)


def test_lineage_follows_a_patch(arrays):
    steps = lineage(arrays, 2)
    assert [s["block"] for s in steps] == [0, 1, 2]
    assert [s["token"] for s in steps] == [2, 2, 1]
    assert [s["status"] for s in steps] == [K, M, M]
    assert steps[0]["shares_with"].ravel().tolist() == [0, 0, 1, 0, 0, 0]
    assert steps[1]["shares_with"].ravel().tolist() == [0, 0, 1, 1, 0, 0]
    assert steps[2]["shares_with"].shape == GRID
    dropped = lineage(arrays, (1, 2))                       # patch 5
    assert [s["token"] for s in dropped] == [5, -1, -1] and dropped[1]["status"] == D
    assert not dropped[1]["shares_with"].any()
    assert [s["token"] for s in lineage(arrays, (0, 2))] == [2, 2, 1]
    with pytest.raises(IndexError, match=r"0\.\.5"):
        lineage(arrays, 6)
    with pytest.raises(IndexError, match=r"\(0\.\.1, 0\.\.2\)"):
        lineage(arrays, (2, 0))


def test_describe_method_shows_what_differs_from_the_defaults():
    assert describe_method(None) == "untouched"
    assert describe_method(rv.EViT(keep_rate=0.7)) == "EViT(keep_rate=0.7)"
    assert describe_method(rv.EViT(keep_rate=0.7, fuse=False)) == "EViT(keep_rate=0.7, fuse=False)"
    assert describe_method((rv.ImagePiece(0.5), rv.ToMe(r=8))) == "ImagePiece(keep_rate=0.5) + ToMe(r=8)"


# --- palette and pixels -------------------------------------------------------------------------------------

def test_palette_tells_the_statuses_and_pieces_apart():
    assert set(palette.STATUS_COLOURS) == set(Status) and palette.STATUS_COLOURS[Status.KEPT][3] == 0
    assert all(len(c) == 4 for c in palette.STATUS_COLOURS.values())
    assert set(palette.STATUS_LABELS) == set(Status)
    colours = {palette.rgb_to_hex(c) for c in palette.PIECE_COLOURS}
    assert len(colours) == len(palette.PIECE_COLOURS) >= 5
    assert palette.FUSED_HEX not in colours and palette.DROPPED_HEX not in colours
    pieces = np.array(palette.PIECE_COLOURS)
    assert palette.colour_distance(pieces, palette.CANDIDATE_HEX).min() > 15     # candidates: not a piece's colour
    between = palette.colour_distance(pieces[:, None], pieces[None])
    assert between[~np.eye(len(pieces), dtype=bool)].min() > 15                  # pieces: five distinct colours
    assert palette.colour_distance(pieces, palette.FUSED_HEX).min() > 12         # none reads as fused
    assert palette.colour_distance(pieces, palette.DROPPED_HEX).min() > 20       # nor as dropped grey
    for view in ("status", "pieces", "attention", "removed", "lineage"):
        assert palette.legend(view)
    with pytest.raises(ValueError, match="status, pieces"):
        palette.legend("nope")


@pytest.fixture(scope="module")
def digit_colours() -> np.ndarray:
    """[n, 3] the colours the clutter generator gave its digits in 2000 images, both splits (the colour does not
    depend on the image size)."""
    from retokviz.data.clutter import render_clutter

    return np.concatenate([render_clutter(1000, seed=0, split=split, image_size=64).colours.numpy()
                           for split in ("train", "test")])


STATUS_HEXES = {"merged (pieces)": palette.PIECE_HEX, "fused": [palette.FUSED_HEX], "dropped": [palette.DROPPED_HEX],
                "let go of: background": [palette.REMOVED_BACKGROUND_HEX],
                "let go of: the object": [palette.REMOVED_OBJECT_HEX], "let go of, no mask": [palette.LET_GO_HEX],
                "candidate": [palette.CANDIDATE_HEX]}


@pytest.mark.parametrize("status", sorted(STATUS_HEXES))
def test_no_status_colour_is_near_a_digits_colour(status, digit_colours):
    # the digits come in every hue, cyan and light blue too: each status colour stays clear of all of them
    # (CIEDE2000; about 2 is barely seen side by side, 10 or more reads as another colour)
    assert digit_colours.std(axis=0).min() > 0.2 and len(digit_colours) == 2000      # a spread of colours
    for colour in STATUS_HEXES[status]:
        distance = palette.colour_distance(digit_colours, colour)
        nearest = digit_colours[distance.argmin()]
        assert distance.min() >= palette.MIN_DATA_DISTANCE, (status, colour, nearest, distance.min())


def test_the_object_outline_stands_out_on_every_digit_colour(digit_colours):
    # the outline is two-tone, a bright line inside a dark one: on any digit one of the two is far from its colour
    bright = palette.colour_distance(digit_colours, palette.OUTLINE_HEX)
    dark = palette.colour_distance(digit_colours, palette.OUTLINE_SHADOW_HEX)
    assert np.maximum(bright, dark).min() > 30
    shade = palette.colour_distance(palette.OUTLINE_HEX, palette.OUTLINE_SHADOW_HEX)
    assert shade > 80


def test_statuses_differ_by_more_than_colour():
    # a fused, a dropped and a let-go patch each carry stripes (fused falling, dropped rising, let go of the
    # object crossed); a merged piece is outlined; so even a digit of a status's exact colour cannot read as one
    assert palette.FUSED_HATCH == "\\" and palette.DROPPED_HATCH == "/" and palette.REMOVED_HATCH["object"] == "x"
    falling, rising, crossed = (raster.hatch(12, 12, d) for d in ("\\", "/", "x"))
    assert not (falling == rising).all() and (crossed == (falling | rising)).all()
    assert 0.25 < rising.mean() < 0.45
    entries = palette.legend("status")
    assert [hatch for _, _, hatch in entries] == ["", palette.TINTED, "\\", "/", palette.OUTLINED]
    labels = " ".join(label for label, _, _ in entries)           # the labels say how each looks
    assert all(word in labels for word in ("outlined", "striped", "outline"))
    with pytest.raises(ValueError, match="direction"):
        raster.hatch(4, 4, "-")


def test_a_kept_patch_shows_the_image_unchanged(arrays):
    np.testing.assert_array_equal(raster.status_image(arrays, 0), to_uint8(arrays.picture))
    image = raster.status_image(arrays, 1)
    for index in (0, 1):
        np.testing.assert_array_equal(patch_pixels(image, index), patch_pixels(to_uint8(arrays.picture), index))


def test_a_dropped_patch_reads_as_dropped_on_black_and_on_white():
    picture = np.full((16, 24, 3), 0.5, dtype=np.float32)
    picture[8:16, 16:24] = 0.0                               # patch 5 (dropped at block 1): black
    picture[0:8, 0:8] = 0.0                                   # patch 0 (kept): black too, like a black helmet
    image = raster.status_image(extract(hand_trace(), picture), 1)
    dropped, kept = patch_pixels(image, 5).astype(int), patch_pixels(image, 0).astype(int)
    assert (kept == 0).all()                                 # the kept black patch stays black
    assert (dropped[..., 0] == dropped[..., 1]).all() and (dropped[..., 1] == dropped[..., 2]).all()   # grey
    assert len(np.unique(dropped)) == 2 and dropped.max() > 200     # light stripes on a dark patch
    assert dropped.mean() > 60                               # far from the black it was
    white = np.ones((16, 24, 3), dtype=np.float32)
    image = raster.status_image(extract(hand_trace(), white), 1)
    dropped = patch_pixels(image, 5).astype(int)
    assert len(np.unique(dropped)) == 2 and dropped.min() < 40 and dropped.mean() < 200   # dark stripes, not white
    assert (patch_pixels(image, 0) == 255).all()


def test_a_fused_patch_is_paled_under_purple_stripes(arrays):
    fused = patch_pixels(raster.status_image(arrays, 1), 4).astype(int)
    stripes = patch_pixels(raster.hatch(16, 24, palette.FUSED_HATCH), 4)
    purple = np.array([round(v * 255) for v in palette.hex_to_rgb(palette.FUSED_HEX)])
    assert (fused[stripes] == purple).all()                        # stripes falling to the right, in purple
    between = fused[~stripes]
    assert between.mean() > purple.mean() + 25                     # between them, the paled picture
    assert (between[:, 2] > between[:, 1]).all() and (between[:, 0] > between[:, 1]).all()   # tinted purple


def test_each_piece_is_one_colour_and_two_pieces_differ():
    flat = extract(hand_trace(), np.full((16, 24, 3), 0.5, dtype=np.float32))
    for draw in (raster.status_image, raster.pieces_image):
        image = draw(flat, 2)
        inner = [_inside(image, index) for index in range(4)]
        first, second = np.concatenate([inner[0], inner[1]]), np.concatenate([inner[2], inner[3]])
        assert len(np.unique(first.reshape(-1, 3), axis=0)) == 1       # piece {0, 1}: one colour
        assert len(np.unique(second.reshape(-1, 3), axis=0)) == 1      # piece {2, 3}: one colour
        assert not np.array_equal(first[0, 0], second[0, 0])          # two pieces, two colours
    mean = extract(hand_trace(), hand_picture())
    image = raster.pieces_image(mean, 2, fill="mean")
    piece = np.concatenate([_inside(image, 0), _inside(image, 1)])
    assert len(np.unique(piece.reshape(-1, 3), axis=0)) == 1          # the piece's mean colour
    with pytest.raises(ValueError, match="fill must be 'colour' or 'mean'"):
        raster.pieces_image(mean, 2, fill="nope")


def _inside(image: np.ndarray, index: int) -> np.ndarray:
    """The pixels of a patch more than the outline's width from any patch border, [n, 3]."""
    width = palette.PIECE_OUTLINE_WIDTH
    return patch_pixels(image, index)[width:PATCH - width, width:PATCH - width].reshape(-1, 3)


def test_piece_colours_follow_first_appearance():
    ranks = raster.piece_ranks(np.array([[7, 7, -1], [3, 9, 3]]))
    np.testing.assert_array_equal(ranks, [[0, 0, -1], [1, 2, 1]])
    # touching pieces take different colours (7 and 3 touch, 9 touches both), and the colours spread: 5 touches
    # none of them and takes one no piece has yet
    colours = raster.piece_colour_indices(np.array([[7, 7, -1, 5], [3, 9, 3, -1]]))
    np.testing.assert_array_equal(colours, [[0, 0, -1, 3], [1, 2, 1, -1]])
    assert (raster.piece_colour_indices(np.full((2, 2), -1)) == -1).all()


def _touching(pieces: np.ndarray):
    """The pairs of patches side by side that belong to two different pieces: [(row, col, row2, col2), ...]."""
    rows, cols = pieces.shape
    pairs = []
    for row, col, down, right in ((r, c, r + dr, c + dc) for r in range(rows) for c in range(cols)
                                  for dr, dc in ((0, 1), (1, 0))):
        if down < rows and right < cols and pieces[row, col] >= 0 and pieces[down, right] >= 0 and \
                pieces[row, col] != pieces[down, right]:
            pairs.append((row, col, down, right))
    return pairs


def _outlined_on_both_sides(image: np.ndarray, arrays: TraceArrays, pair) -> bool:
    """Whether the pixel rows (or columns) either side of the border between two patches differ from the middle of
    their own patch, and are darker: a line drawn between the two pieces (the picture is flat, the tints even)."""
    height, width = arrays.patch_size
    row, col, row2, col2 = pair
    middle = image[row * height + height // 2, col * width + width // 2].astype(int)
    middle2 = image[row2 * height + height // 2, col2 * width + width // 2].astype(int)
    if row2 == row:                                          # side by side: the columns at x - 1 and x
        x = col2 * width
        span = slice(row * height, (row + 1) * height)
        first, second = image[span, x - 1].astype(int), image[span, x].astype(int)
    else:                                                    # one above the other: the rows at y - 1 and y
        y = row2 * height
        span = slice(col * width, (col + 1) * width)
        first, second = image[y - 1, span].astype(int), image[y, span].astype(int)
    return bool((first.sum(-1) < middle.sum() - 30).all() and (second.sum(-1) < middle2.sum() - 30).all())


@pytest.fixture(scope="module")
def piece_arrays() -> list[TraceArrays]:
    """Bundled ImagePiece (showcase) and ToMe (small) models on generated images, over a flat grey picture so that
    the tints are even: every block's pieces, as real models make them."""
    out = []
    for name, count in (("showcase-imagepiece-0.7-stem", 3), ("small-tome-spatial", 3)):
        model = rv.load_checkpoint(name)
        size = model.patch_embed.img_size[0]
        images, _, _ = rv.data.make_clutter(count, seed=3, image_size=size)
        with rv.record(model) as trace, torch.no_grad():
            model(images)
        flat = np.full((size, size, 3), 0.6, dtype=np.float32)
        out += [extract(trace, flat, image=index) for index in range(count)]
    return out


def test_touching_pieces_never_share_a_colour_without_an_outline_between_them(piece_arrays):
    touching = same = 0
    for arrays in piece_arrays:
        for block in range(arrays.num_blocks):
            pieces = arrays.pieces[block]
            colours = raster.piece_colour_indices(pieces)
            pairs = _touching(pieces)
            touching += len(pairs)
            same += sum(colours[r, c] == colours[r2, c2] for r, c, r2, c2 in pairs)
            for draw in (raster.status_image, raster.pieces_image):
                image = draw(arrays, block, outline=False)
                assert all(_outlined_on_both_sides(image, arrays, pair) for pair in pairs), (arrays.method, block)
    assert touching > 200                               # the models made many pieces side by side
    assert same <= 0.02 * touching                      # nearly all in two colours; the rest, outlined (above)


def test_legends_list_only_what_the_picture_holds():
    mask = np.zeros((16, 24), dtype=bool)
    mask[10, 18] = True
    plain, masked = extract(hand_trace(), hand_picture()), extract(hand_trace(), hand_picture(), mask=mask)

    def labels(arrays, view, blocks):
        return [label for label, _, _ in palette.legend(view, raster.legend_keys(arrays, view, blocks))]

    assert labels(plain, "status", 0) == [palette.STATUS_LABELS[Status.KEPT]]            # block 0 keeps all
    assert labels(plain, "status", 1) == [palette.STATUS_LABELS[s] for s in Status]      # every status
    assert labels(masked, "status", 0)[-1] == "the object's outline"                   # outlined with a mask only
    one, two = labels(plain, "pieces", 1), labels(plain, "pieces", 2)                   # one piece, then two
    assert any("a piece" in label for label in one) and not any("another piece" in label for label in one)
    assert any("another piece" in label for label in two) and not any("fused" in label for label in two)
    removed = labels(masked, "removed", 2)
    assert removed == ["let go of: background", "let go of: touches the object", "still carried (as it is)",
                       "the object's outline"]
    assert labels(plain, "removed", 0) == ["still carried (as it is)"]                 # nothing let go of yet
    every = palette.to_payload()["legends"]
    assert all(entry["css"].startswith("background:") and entry["hatched"] == bool(entry["hatch"])
               for entries in every.values() for entry in entries)


def test_every_figure_legend_names_what_its_pictures_hold(recorded, piece_arrays):
    def texts(figure):
        return [text.get_text() for legend in figure.legends for text in legend.get_texts()]

    imagepiece = piece_arrays[0]
    for figure, view, arrays, blocks in (
            (static.plot_status(recorded), "status", recorded, list(recorded.reduction_blocks)),
            (static.plot_pieces(imagepiece), "pieces", imagepiece, list(imagepiece.reduction_blocks)),
            (static.plot_removed(recorded), "removed", recorded, recorded.num_blocks - 1),
            (static.plot_view(recorded, "attention", blocks=[0, 2]), "attention", recorded, [0, 2])):
        expected = [label for label, _, _ in palette.legend(view, raster.legend_keys(arrays, view, blocks))]
        assert texts(figure) == expected, view
    assert not any("fused" in text for text in texts(static.plot_pieces(imagepiece)))   # ImagePiece fuses nothing
    patches = [(r, c) for r in range(imagepiece.grid[0]) for c in range(imagepiece.grid[1])]
    carried = next(patch for patch in patches if (imagepiece.owner[:, patch[0], patch[1]] >= 0).all())
    dropped = next(patch for patch in patches if imagepiece.owner[-1, patch[0], patch[1]] < 0)
    assert "dropped" not in texts(static.plot_lineage(imagepiece, carried))   # its patch never hatched
    assert "dropped" in texts(static.plot_lineage(imagepiece, dropped))
    assert any("fused" in text for text in texts(static.plot_status(recorded)))         # EViT does
    # a legend too wide for one row wraps onto more, inside the figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for blocks in ([1], [1, 3], list(imagepiece.reduction_blocks)):
        figure = static.plot_pieces(imagepiece, blocks=blocks)
        renderer = FigureCanvasAgg(figure).get_renderer()
        legend = figure.legends[0].get_window_extent(renderer)
        panels = min(ax.get_window_extent(renderer).y0 for ax in figure.axes)
        assert legend.x0 >= 0 and legend.x1 <= figure.bbox.width and legend.y0 >= 0, blocks   # inside the figure
        assert legend.y1 <= panels + 1, blocks                                               # below the pictures


def test_attention_view(arrays):
    image = raster.attention_image(arrays, 1).astype(int)
    grey = to_uint8(raster.greyed(arrays.picture)).astype(int)
    change = [np.abs(patch_pixels(image, i) - patch_pixels(grey, i)).mean() for i in range(6)]
    assert change[0] > change[3]                            # the highest score is drawn strongest
    assert raster.attention_source(arrays, 0) is None and raster.attention_source(arrays, 2) == 2
    np.testing.assert_array_equal(raster.attention_image(arrays, 0), to_uint8(raster.greyed(arrays.picture)))
    dropped = patch_pixels(raster.attention_image(arrays, 2), 5).astype(int)   # no score there: hatched, grey
    stripes = patch_pixels(raster.hatch(16, 24), 5)
    assert (dropped[..., 0] == dropped[..., 2]).all() and len(np.unique(dropped[stripes])) == 1
    unscored = extract(Trace([LayerRecord(l.num_tokens, l.owner, l.status) for l in hand_trace().layers],
                             rv.ToMe(r=1), 0, GRID), hand_picture())
    with pytest.raises(ValueError, match="no class-attention scores"):
        raster.attention_image(unscored, 1)


def test_removed_view_needs_a_mask_and_colours_by_object():
    mask = np.zeros((16, 24), dtype=bool)
    mask[10, 18] = True                                       # the object touches patch 5 only
    arrays = extract(hand_trace(), hand_picture(), mask=mask)
    assert raster.removed_patches(arrays, 1).ravel().tolist() == [0, 0, 0, 0, 1, 1]   # fused, dropped
    counts = raster.removed_counts(arrays, 2)
    assert counts == {"removed": 2, "background": 1, "share": 0.5, "random": pytest.approx(5 / 6)}
    image = raster.removed_image(arrays, 2, outline=False).astype(int)
    background, on_object = patch_pixels(image, 4).mean(axis=(0, 1)), patch_pixels(image, 5).mean(axis=(0, 1))
    assert background[2] > background[0]                    # blue
    assert on_object[0] > on_object[2]                      # vermilion
    np.testing.assert_array_equal(patch_pixels(image, 0), patch_pixels(to_uint8(arrays.picture), 0))
    with pytest.raises(ValueError, match="needs the object's mask"):           # no split to count without one
        raster.removed_counts(extract(hand_trace(), hand_picture()), 2)
    unmasked = raster.removed_image(extract(hand_trace(), hand_picture()), 2, outline=False).astype(int)
    for patch in (4, 5):                                                    # without a mask: both in one colour
        let_go = patch_pixels(unmasked, patch).mean(axis=(0, 1))           # violet: red and blue over green
        assert let_go[0] > let_go[1] and let_go[2] > let_go[1], (patch, let_go)
    tome = extract(hand_trace(rv.ToMe(r=2)), hand_picture(), mask=mask)
    assert raster.removed_patches(tome, 2).ravel().tolist() == [1, 1, 1, 1, 0, 0]      # ToMe: merged


def test_the_object_outline_is_drawn_where_a_mask_is_given():
    mask = np.zeros((16, 24), dtype=bool)
    mask[4:12, 6:18] = True
    arrays = extract(hand_trace(), np.full((16, 24, 3), 0.5, dtype=np.float32), mask=mask)
    outline = np.array([round(v * 255) for v in palette.hex_to_rgb(palette.OUTLINE_HEX)])
    drawn = (raster.status_image(arrays, 0) == outline).all(axis=2)
    assert drawn.any() and not drawn[~mask].any()
    assert not (raster.status_image(arrays, 0, outline=False) == outline).all(axis=2).any()


def test_lineage_image_and_view_image(arrays):
    image = raster.lineage_image(arrays, 1, 2)
    frame = np.array([round(v * 255) for v in palette.hex_to_rgb(palette.LINEAGE_PATCH_HEX)])
    shares = np.array([round(v * 255) for v in palette.hex_to_rgb(palette.LINEAGE_HEX)])
    assert (patch_pixels(image, 2) == frame).all(axis=2).any()
    assert (patch_pixels(image, 3) == shares).all(axis=2).any()
    assert not (patch_pixels(image, 0) == shares).all(axis=2).any()
    assert image.shape == (16, 24, 3) and image.dtype == np.uint8
    for view in raster.VIEWS[:3]:
        assert raster.view_image(arrays, view, 2).shape == (16, 24, 3)
    marked = raster.view_image(arrays, "status", 1, patch=2)
    assert (patch_pixels(marked, 2) == frame).all(axis=2).any()
    with pytest.raises(ValueError, match="unknown view 'heat'; the views are status, pieces, attention, removed"):
        raster.view_image(arrays, "heat", 1)
    with pytest.raises(IndexError, match=r"block must be an int in 0\.\.2"):
        raster.status_image(arrays, 3)


@pytest.fixture(scope="module")
def recorded():
    """A 224-pixel image (14 x 14 patches) through a tiny 6-block ViT with EViT, and the arrays."""
    model = rv.apply(tiny_vit(depth=6, grid=14), rv.EViT(keep_rate=0.6))
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(224, 224, dtype=torch.bool)
    mask[60:150, 80:140] = True
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    return extract(trace, images, mask=mask)


def test_views_are_fast_enough_for_a_widget(recorded):
    for view in raster.VIEWS:
        raster.view_image(recorded, view, 0)                 # warm up (the colour map loads once)
        times = []
        for block in range(recorded.num_blocks):
            start = time.perf_counter()
            image = raster.view_image(recorded, view, block, patch=(5, 5))
            times.append(time.perf_counter() - start)
            assert image.shape == (224, 224, 3) and image.dtype == np.uint8
        assert np.median(times) < 0.05, (view, times)


# --- figures ------------------------------------------------------------------------------------------------

def test_static_figures_export_png_and_svg(recorded, tmp_path):
    figures = {
        "status": static.plot_status(recorded),
        "pieces": static.plot_pieces(recorded, fill="mean"),
        "attention": static.plot_attention(recorded),
        "lineage": static.plot_lineage(recorded, (5, 5), blocks=[0, 3]),
        "removed": static.plot_removed(recorded),
        "tokens": static.plot_tokens({"EViT": recorded, "counts": [196, 150, 100, 100, 60, 60]}),
        "methods": static.plot_methods([recorded, recorded], view="attention"),
        "view": static.plot_view(recorded, "removed", blocks=[1, 5], patch=7),
    }
    for name, figure in figures.items():
        assert isinstance(figure, Figure) and figure._repr_png_().startswith(b"\x89PNG")
        figure.savefig(tmp_path / f"{name}.png")
        figure.savefig(tmp_path / f"{name}.svg")
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert "<svg" in (tmp_path / f"{name}.svg").read_text()[:2000]
    with pytest.raises(ValueError, match=r"block 0 has no class-attention scores; the scored blocks are \[1, 3, 4\]"):
        static.plot_attention(recorded, block=0)
    with pytest.raises(ValueError, match="non-empty"):
        static.plot_tokens({"nothing": []})


def test_robustness_figures_export(tmp_path):
    from retokviz.measure.metrics import BackgroundRemoved
    from retokviz.measure.robustness import MaskedAccuracy, MaskingEffect, RemovedAtRate

    figures = [
        static.plot_background_removed([RemovedAtRate(0.5, "EViT(keep_rate=0.5)", 0.6, 0.9, 0.8),
                                        RemovedAtRate(0.9, "EViT(keep_rate=0.9)", 0.2, 0.95, 0.8)]),
        static.plot_masking_effect(MaskingEffect((1, 2), (0.8, 0.6), (0.95, 0.95), 0.96, "untouched", 200)),
        static.plot_masked_accuracy(MaskedAccuracy((0, 4), {"EViT": (0.9, 0.8), "ToMe": (0.9, 0.7)}, "any", 100)),
        static.plot_let_go_by_reason({1: {"bottom": BackgroundRemoved(0.1, 0.9, 0.8),
                                          "displaced": BackgroundRemoved(0.0, float("nan"), 0.8)}}),
    ]
    for index, figure in enumerate(figures):
        figure.savefig(tmp_path / f"{index}.png")
        figure.savefig(tmp_path / f"{index}.svg")
        assert (tmp_path / f"{index}.svg").stat().st_size > 1000


def test_plotly_charts_draw_the_raster(recorded):
    figure = charts.status_figure(recorded, 3, "pieces", patch=(2, 2))
    (trace,) = figure.data
    assert trace.type == "image"
    np.testing.assert_array_equal(np.asarray(trace.z), raster.view_image(recorded, "pieces", 3, (2, 2)))
    assert "patch (0, 0)" in trace.text[0][0]
    assert charts.status_figure(recorded, 0, hover=False).data[0].text is None
    tokens = charts.tokens_figure([recorded, [196, 100, 50, 50, 20, 20]])
    assert len(tokens.data) == 2 and list(tokens.data[0].y) == recorded.num_tokens.tolist()


def test_importing_retokviz_and_its_views_loads_no_plotly_or_ipywidgets():
    code = ("import sys, retokviz, retokviz.views, retokviz.views.static, retokviz.views.charts, retokviz.measure.robustness;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('plotly', 'ipywidgets')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_let_go_figure_draws_each_reason_split_into_background_and_object():
    from retokviz.measure.metrics import BackgroundRemoved

    reasons = {1: {"bottom": BackgroundRemoved(0.10, 0.9, 0.8), "displaced": BackgroundRemoved(0.05, 1.0, 0.8)},
               3: {"bottom": BackgroundRemoved(0.04, 0.5, 0.8), "displaced": BackgroundRemoved(0.0, float("nan"), 0.8)}}
    figure = static.plot_let_go_by_reason(reasons)
    (ax,) = figure.axes
    bars = [(round(bar.get_x() + bar.get_width() / 2, 6), bar.get_y(), bar.get_height()) for bar in ax.patches]
    heights = {(x, round(y, 6)): round(h, 6) for x, y, h in bars}
    # bottom bars left of each block's tick, displaced right; background from 0, object stacked on it, in %
    assert heights[(-0.2, 0.0)] == 9.0 and heights[(-0.2, 9.0)] == 1.0              # block 1, bottom
    assert heights[(0.2, 0.0)] == 5.0 and heights[(0.2, 5.0)] == 0.0                # block 1, displaced: all background
    assert heights[(0.8, 0.0)] == 2.0 and heights[(0.8, 2.0)] == 2.0                # block 3, bottom: half object
    assert heights[(1.2, 0.0)] == 0.0                                                # block 3, displaced: none
    labels = [text.get_text() for text in ax.texts]
    assert labels == ["bottom\nlift +0.50", "bottom\nlift -1.50", "displaced\nlift +1.00", "displaced\nnone"]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["block 1", "block 3"]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["background", "object", "displaced"]
    alone = static.plot_let_go_by_reason({1: {"bottom": BackgroundRemoved(0.10, 0.9, 0.8)}})
    assert [text.get_text() for text in alone.axes[0].get_legend().get_texts()] == ["background", "object"]
    with pytest.raises(ValueError, match="reasons is empty"):
        static.plot_let_go_by_reason({})
