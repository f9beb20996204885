"""The tutorial's helpers (retokviz.tutorial.lessons): the numbers the notebooks print and assert."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retokviz as rv
from retokviz.tutorial import lessons
from retokviz.views.figure import Figure
from conftest import images_for, tiny_vit


def test_the_receptive_field_of_a_patchify_is_its_patch_and_of_the_stem_more():
    model = tiny_vit(grid=4)
    assert lessons.receptive_field(model) == (16, 16)
    rv.use_coherence_stem(model)
    height, width = lessons.receptive_field(model)
    assert height > 16 and width > 16


def test_class_attention_scores_every_block_and_leaves_the_method_in_place():
    model = rv.apply(tiny_vit(depth=3, grid=4), rv.ToMe(r=2))
    scores = lessons.class_attention(model, images_for(model, batch=3), progress=False)
    assert scores.shape == (3, 3, 16) and bool((scores > 0).all()) and bool((scores.sum(-1) < 1).all())
    assert rv.method_of(model) == rv.ToMe(r=2)


def test_rescoring_counts_one_displaced_semantic_token_per_piece_kept():
    model = rv.apply(tiny_vit(depth=4, grid=6), rv.ImagePiece(keep_rate=0.5, layers=(1, 2)))
    with rv.record(model) as trace, torch.no_grad():
        model(images_for(model, batch=4))
    counts = lessons.rescoring(trace)
    assert sorted(counts) == [1, 2]
    for block in counts.values():
        assert block["displaced"] == block["pieces kept"] and block["images"] == 4


def test_plot_patches_draws_a_picture_with_its_grid():
    figure = lessons.plot_patches(np.zeros((64, 64, 3), dtype=np.float32), patch_size=16)
    assert isinstance(figure, Figure) and figure._repr_png_()[:4] == b"\x89PNG"


def test_page_data_refuses_a_page_that_is_not_an_explorer_page(tmp_path):
    page = tmp_path / "other.html"
    page.write_text("<html></html>")
    with pytest.raises(ValueError, match="holds no explorer data"):
        lessons.page_data(page)


def test_the_hiding_lesson_hides_what_is_clicked_and_answers_for_the_picture_shown():
    import torch

    from conftest import tiny_vit
    from retokviz.measure.robustness import hide_patches
    from retokviz.tutorial import widgets

    model = tiny_vit(depth=2, grid=4)                                          # 64 x 64, a 4 x 4 grid
    images = torch.randn(2, 3, 64, 64)
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[:, 0:20, 0:20] = True                                               # the object: patches (0,0) (0,1) (1,0) (1,1)
    lesson = widgets.hiding_lesson(model, images, masks, image=1)
    assert lesson.on_object == {(0, 0), (0, 1), (1, 0), (1, 1)} and lesson.hidden == set()
    first = bytes(lesson.picture.value)
    lesson.picture.picked = [3, 2]                                             # a click on row 3, col 2
    assert lesson.hidden == {(3, 2)} and lesson.picture.picked is None and bytes(lesson.picture.value) != first
    lesson.picture.picked = [3, 2]                                             # a second click shows it again
    assert lesson.hidden == set() and bytes(lesson.picture.value) == first
    lesson.hide("object")
    assert lesson.hidden == lesson.on_object and "4 patches hidden: 4 on the object" in lesson.answer.value
    with torch.no_grad():                                                      # the answer is the model's on that picture
        expected = model(hide_patches(images[1:2], torch.tensor([[0, 1, 4, 5]]), 16)).softmax(-1)[0].topk(3)
    assert [p for _, p in lesson.prediction] == pytest.approx(expected.values.tolist(), abs=1e-6)
    with pytest.raises(ValueError, match=r"patch row must be an int in 0..3, got 4"):
        lesson.set(hidden=[(0, 0), (4, 0)])
    assert lesson.hidden == lesson.on_object                                   # refused: nothing changed
    with pytest.raises(ValueError, match="unknown where 'sky'"):
        lesson.hide("sky")


# --- notebook 03: ImagePiece's merge rounds, one step at a time ------------------------------------------------

def _digit_inputs(count: int = 2, size: int = 96):
    torch.manual_seed(0)
    images = torch.randn(count, 3, size, size)
    masks = torch.zeros(count, size, size, dtype=torch.bool)
    masks[:, 32:80, 24:64] = True
    return images, masks


def test_merge_rounds_read_from_imagepiece_agree_with_its_trace_and_refuse_a_disagreeing_one():
    from retokviz.tutorial.rounds import merge_rounds

    method = rv.ImagePiece(keep_rate=0.5, layers=(1, 2))
    model = rv.apply(tiny_vit(depth=4, grid=6), method)
    image = images_for(model, batch=1)
    with rv.record(model) as trace, torch.no_grad():
        model(image)
    dests = {b: layer.step.dest for b, layer in enumerate(trace.layers) if layer.step is not None}
    found = merge_rounds(model, image, method, dests)
    assert sorted(found) == [1, 2] and rv.method_of(model) == method          # its own method back in place
    counts = lessons.rescoring(trace)
    first = found[1]
    assert (first.received, first.kept, int(first.semantic.sum())) == (36, 18, 18)
    assert [(a.candidates, a.merged) for a in first.after] == method.merge_plan(36) == [(18, 9), (9, 4)]
    for block, rounds in found.items():
        assert int(rounds.displaced.sum()) == counts[block]["displaced"]
        assert int(rounds.final_kept.sum()) >= trace.layers[block].num_tokens   # a kept piece holds several
        for after in rounds.after:                                            # semantic tokens never merge
            assert len(np.unique(after.group[rounds.semantic])) == int(rounds.semantic.sum())
            assert not (after.pieces & rounds.semantic).any()
            assert len(np.unique(after.group[~rounds.semantic])) == after.candidates - after.merged
    wrong = dict(dests)
    wrong[1] = dests[1].flip(1)
    with pytest.raises(RuntimeError, match="keeps other tokens than the recorded pass"):
        merge_rounds(model, image, method, wrong)
    with pytest.raises(TypeError, match="ImagePiece"):
        merge_rounds(model, image, rv.EViT(keep_rate=0.5))


def test_the_imagepiece_lesson_steps_through_its_rounds_as_the_trace_counts_them():
    from retokviz.tutorial import widgets

    images, masks = _digit_inputs()
    lesson = widgets.imagepiece_lesson(tiny_vit("deit", depth=4, grid=6), images, masks, keep_rate=0.5, image=1)
    assert lesson.steps == ["candidates", "round 1", "re-scoring 1", "round 2", "discard"]
    assert list(lesson.block.options) == [("block 1", 1), ("block 2", 2), ("block 3", 3)]
    shown, pictures = [], []
    for _ in lesson.steps:
        shown.append(lesson.shown())
        pictures.append(bytes(lesson.picture.value))
        lesson.next.click()                                                    # as the button is clicked
    assert [s["step"] for s in shown] == lesson.steps and lesson.next.disabled and not lesson.back.disabled
    assert all(a != b for a, b in zip(pictures, pictures[1:]))                # every click draws another picture
    candidates, round_1, rescoring, round_2, discard = shown
    assert candidates["received"] == 36 and candidates["semantic"] == 18 and candidates["candidates"] == 18
    assert (round_1["candidates"], round_1["merged"], round_1["tokens"]) == (18, 9, 9)
    assert (round_2["candidates"], round_2["merged"], round_2["tokens"]) == (9, 4, 5)
    assert rescoring["pieces kept"] == rescoring["displaced"]                 # one for one
    trace = lesson.run.trace
    count = lessons.rescoring(trace)[1]
    assert discard["kept"] == trace.layers[1].num_tokens == 18
    assert discard["displaced"] == discard["pieces kept"] == count["displaced"] == count["pieces kept"]
    assert discard["semantic kept"] + discard["pieces kept"] == 18
    assert discard["let go"] == 36 - 9 - 4 - 18                                # the tokens left after round 2, less K
    assert discard["patches let go"] == int((trace.layers[1].owner[0] < 0).sum())   # block 1 is the first reduction
    assert "dropped" in lesson.legend.value                                    # the explorer's status legend
    lesson.back.click()
    assert lesson.shown()["step"] == "round 2"
    before = bytes(lesson.picture.value)
    lesson.picture.picked = [2, 3]                                             # a click on a patch follows it
    assert bytes(lesson.picture.value) != before and "patch (row 2, col 3)" in lesson.story.value
    lesson.set(block=2, step="round 1")
    assert lesson.shown()["block"] == 2 and lesson.shown()["step"] == "round 1"
    for arguments in ({"step": "round 7"}, {"block": 0}, {"keep_rate": 1.0}, {"image": 2},
                      {"keep_rate": 0.6, "step": 9}):
        with pytest.raises(ValueError):
            lesson.set(**arguments)
    assert (lesson.block.value, lesson.step.value, lesson.keep_rate.value) == (2, 1, 0.5)   # refused: unchanged
    lesson.keep_rate.value = 0.3                                               # dragged
    assert lesson.shown()["step"] == "round 1" and (lesson.rounds.received, lesson.rounds.kept) == (11, 4)
    assert all(control.tooltip for control in (lesson.image, lesson.keep_rate, lesson.step, lesson.back,
                                               lesson.next))
    assert all(lesson.block.tooltips) and lesson.picture.hint


# --- notebook 06: training that pauses and resumes ---------------------------------------------------------------

def _tiny_training(out_dir, epochs: int = 2):
    import timm
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=48,
                              depth=2, num_heads=3, num_classes=10)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(48, 3, 32, 32, generator=generator), torch.arange(48) % 10)
    config = rv.TrainConfig(epochs=epochs, batch_size=16, lr=1e-3, warmup_epochs=0, keep_warmup_epochs=0,
                            keep_decay_epochs=1, label_smoothing=0.0, device="cpu", out_dir=out_dir)
    return model, data, config


def test_the_training_lesson_pauses_after_an_epoch_and_goes_on_to_the_uninterrupted_weights(tmp_path):
    from retokviz.tutorial import widgets

    model, data, config = _tiny_training(tmp_path / "run")
    lesson = widgets.training_lesson(model, data, data, config, rv.EViT(keep_rate=0.5), num_images=1)
    assert lesson.compare_with == rv.bundled.name("EViT") and lesson.shown()["state"] == "ready"
    assert lesson.train_button.tooltip and lesson.pause_button.tooltip and lesson.pause_button.disabled
    with pytest.raises(ValueError, match="until must be an epoch count in 1..2"):
        lesson.start(until=3)
    lesson.run(until=1)                                          # trains epoch 1, saves it, pauses
    paused = lesson.shown()
    assert paused["state"] == "paused" and paused["epochs"] == 1 and paused["steps"] == 3
    assert (tmp_path / "run" / "last.pt").is_file() and "paused after epoch 1 of 2" in lesson.readout.value
    assert lesson.train_button.description == "go on" and not lesson.train_button.disabled
    assert [column["patches"] for column in paused["board"]] == [16, 144]   # beside the bundled EViT model
    first_board = lesson.board
    first_epoch = dict(lesson.history[0])
    lesson.train_button.click()                                  # as the button is clicked: in the background
    lesson.wait(timeout=120)
    done = lesson.shown()
    assert done["state"] == "done" and done["epochs"] == 2 and done["steps"] == done["total steps"] == 6
    assert lesson.history[0] == first_epoch and lesson.result.history == lesson.history
    assert lesson.train_button.disabled and lesson.pause_button.disabled
    assert lesson.board is not first_board and lesson.compared.children == (lesson.board.root,)   # drawn anew
    with pytest.raises(RuntimeError, match="the run is done"):
        lesson.start()

    whole, data, config = _tiny_training(None)                   # the same run, uninterrupted
    rv.train(whole, data, data, config, rv.EViT(keep_rate=0.5))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), whole.state_dict().values()))


def test_the_training_lesson_needs_an_empty_out_dir(tmp_path):
    from retokviz.tutorial.widgets import training_lesson

    model, data, config = _tiny_training(None)
    with pytest.raises(ValueError, match="out_dir"):
        training_lesson(model, data, data, config)
    (tmp_path / "last.pt").write_bytes(b"")
    model, data, config = _tiny_training(tmp_path)
    with pytest.raises(FileExistsError, match="holds an earlier run"):
        training_lesson(model, data, data, config)
    with pytest.raises(ValueError, match="compare_with"):
        training_lesson(model, data, data, _tiny_training(tmp_path / "new")[2], compare_with="no-such-model")


# --- the notebooks' own words ------------------------------------------------------------------------------------

def _notebooks() -> dict:
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "notebooks"
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.ipynb"))}


def test_every_notebook_says_at_its_top_what_it_teaches_and_how_long_it_takes_in_each_mode():
    import re

    for name, notebook in _notebooks().items():
        top = "".join(notebook["cells"][0]["source"])
        assert re.match(r"# \d · \S", top), name                               # its title
        timing = re.search(r"\*Time on a 2-core CPU: (.+) in quick mode .*, (about .+) in full mode", top)
        assert timing, f"{name} does not say how long it takes in each mode"


def test_the_tour_sends_the_reader_to_every_lesson():
    notebooks = _notebooks()
    tour = notebooks.pop("00_tour")
    texts = ["".join(cell["source"]) for cell in tour["cells"]]
    where = next(text for text in texts if text.startswith("## Where next"))
    for name, notebook in notebooks.items():
        title = "".join(notebook["cells"][0]["source"]).splitlines()[0].removeprefix("# ")   # "3 · ImagePiece: ..."
        assert f"**{title.split(':')[0]}**" in where, f"where next does not name {name} ({title})"


def test_no_lesson_widget_puts_a_tooltip_where_the_browser_cannot_draw_it(tmp_path):
    # ipywidgets' views of a widget without a description (Image, Box, an anywidget) read its description to place
    # a tooltip and fail to draw at all ("Click to show javascript error"): those say it in words or a `hint`
    import ipywidgets

    from retokviz.explorer.compare import compare
    from retokviz.tutorial import widgets

    def every(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from every(child)

    images, masks = _digit_inputs(1)
    model = tiny_vit("deit", depth=4, grid=6)
    trained, data, config = _tiny_training(tmp_path / "run")
    shown = [widgets.evit_lesson(model, images, masks), widgets.tome_lesson(model, images, masks),
             widgets.imagepiece_lesson(model, images, masks), widgets.hiding_lesson(model, images, masks),
             widgets.side_by_side({"a": model, "b": tiny_vit("deit", depth=2, grid=4)}, images, masks),
             widgets.training_lesson(trained, data, data, config, compare_with=None),
             compare(model, images, masks)]
    for lesson in shown:
        for widget in every(lesson.root):
            if getattr(widget, "tooltip", None):
                assert "description" in widget.trait_names(), (type(lesson).__name__, type(widget).__name__)
        assert any(isinstance(widget, ipywidgets.Widget) and getattr(widget, "tooltip", None)
                   for widget in every(lesson.root)), type(lesson).__name__     # and its controls say what they do
