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
