"""The tutorial's lesson widgets: one method on one image with the few sliders a notebook's lesson is about, built
from the explorer's parts (the Session's cached passes, raster.view_image, the panels' HTML) as `rv.compare` is.

    from retokviz.tutorial import widgets
    lesson = widgets.evit_lesson(image=3)          # notebook 02: EViT's keep rate and block, the status view
    lesson.set(keep_rate=0.5, block=5)             # checked; as if the sliders were dragged
    lesson.shown()                                 # {"block": 5, "tokens": 20, "patches": 144}: what it shows
    lesson = widgets.tome_lesson(image=3)          # notebook 04: ToMe's r per block and its token order
    lesson = widgets.hiding_lesson(image=3)        # notebook 01: click patches to hide them, watch the answer
    lesson = widgets.imagepiece_lesson(image=3)    # notebook 03: ImagePiece's merge rounds, one step at a time
    lesson.set(block=1, step="re-scoring 1")       # checked; lesson.next_step() as the button does
    lesson = widgets.training_lesson(model, train_set, test_set, config, method)   # notebook 06: train, pause, go on
    board = widgets.side_by_side({"mine": model, "bundled": "showcase-evit-0.7"})  # two models, one keep rate
    lesson                                         # as a cell's last line: the widget

One module per widget: `hiding` (notebook 01), `evit` (02), `imagepiece` (03), `tome` (04), `training` (06) and
`board` (side_by_side, which the training lesson shows); `base` holds what they share (the Session, `Lesson`).
ipywidgets is imported when a lesson is made.
"""
from retokviz.tutorial.widgets.base import LESSON_IMAGES, PIXELS, Lesson, MethodSession
from retokviz.tutorial.widgets.board import SIDE_TOOLTIPS, SideBySide, side_by_side
from retokviz.tutorial.widgets.evit import EViTLesson, evit_lesson
from retokviz.tutorial.widgets.hiding import HidingLesson, hiding_lesson
from retokviz.tutorial.widgets.imagepiece import (IMAGEPIECE_RATES, IMAGEPIECE_TOOLTIPS, ImagePieceLesson,
                                                  imagepiece_lesson)
from retokviz.tutorial.widgets.tome import ORDER_LABELS, ToMeLesson, tome_lesson
from retokviz.tutorial.widgets.training import LESSON_TOOLTIPS, TrainingLesson, training_lesson

__all__ = [
    "EViTLesson", "HidingLesson", "IMAGEPIECE_RATES", "IMAGEPIECE_TOOLTIPS", "ImagePieceLesson", "LESSON_IMAGES",
    "LESSON_TOOLTIPS", "Lesson", "MethodSession", "ORDER_LABELS", "PIXELS", "SIDE_TOOLTIPS", "SideBySide",
    "ToMeLesson", "TrainingLesson", "evit_lesson", "hiding_lesson", "imagepiece_lesson", "side_by_side",
    "tome_lesson", "training_lesson",
]
