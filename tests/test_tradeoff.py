"""The trade-off view shows how sure its figures are: top-1 with its bootstrap interval, axes that do not magnify a
step of one image, keep-rate labels that never overlap, and "within spread" said in words wherever it appears.

Drawn from the committed showcase sweep (results/) and from rows made here: nothing is measured."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Annotation

import retokviz as rv
from retokviz.sweep.noise import ABOVE_CEILING, WITHIN_SPREAD
from retokviz.views import tradeoff
from retokviz.views.tradeoff import (TOP1_MIN_SPAN, accuracy_interval, caption, load_rows, note_meaning,
                                     plot_tradeoff, share_interval, top1_limits)


@pytest.fixture(scope="module")
def table():
    path = rv.bundled.sweep_table("showcase")
    assert path is not None
    rows = load_rows(path)                          # the baseline's rows at batch 64, as the explorer first shows them
    return [row for row in rows if row["model"] == rv.bundled.name("none") and row["batch_size"] == 64]


@pytest.fixture(scope="module")
def figure(table):
    return plot_tradeoff(table, highlight=("evit", 0.7))


@pytest.mark.parametrize("correct, count", [(960, 1000), (60, 64), (500, 1000), (13, 200)])
def test_the_interval_is_the_bootstrap_of_the_share(correct, count):
    flags = torch.zeros(count, dtype=torch.bool)
    flags[:correct] = True
    drawn = rv.intervals.bootstrap(rv.intervals.share, flags, resamples=4000)
    exact = share_interval(correct, count)
    assert exact[0] < correct / count < exact[1]
    assert np.allclose(exact, drawn, atol=1.5 / count), (exact, drawn)   # within an image or so of the draws


def test_a_share_of_all_or_nothing_has_no_width_and_bad_counts_are_refused():
    assert share_interval(64, 64) == (1.0, 1.0) and share_interval(0, 10) == (0.0, 0.0)
    with pytest.raises(ValueError, match="correct <= count"):
        share_interval(5, 4)


def test_every_row_of_the_committed_table_has_its_interval(table):
    for row in table:
        low, high = accuracy_interval(row)
        expected = 2 * 1.96 * (row["accuracy"] * (1 - row["accuracy"]) / 1000) ** 0.5   # 1000 images: 2.4 points at 96 %
        assert low < row["accuracy"] < high and 0.7 * expected < high - low < 1.3 * expected
    assert accuracy_interval(dict(table[0], data="somewhere")) is None      # no image count: no interval
    assert accuracy_interval(dict(table[0], accuracy=None)) is None


def test_the_top1_axis_rule():
    low, high = top1_limits([95.9, 96.2])                                  # a 0.3-point wiggle
    assert high - low == pytest.approx(TOP1_MIN_SPAN) and low < 95.9 and high > 96.2
    assert (96.2 - 95.9) / (high - low) < 0.1                               # is a tenth of the axis at most
    low, high = top1_limits([99.2, 100.0])                                  # never far past 100
    assert high <= 100.0 + 0.02 * TOP1_MIN_SPAN + 1e-9 and high - low >= TOP1_MIN_SPAN
    low, high = top1_limits([0.0, 0.5])
    assert low >= -0.02 * TOP1_MIN_SPAN - 1e-9 and high - low >= TOP1_MIN_SPAN
    low, high = top1_limits([40.0, 90.0])                                   # wide data: their span, with margins
    assert low < 40.0 and high > 90.0 and high - low < 60.0


def test_the_accuracy_panels_show_every_interval_on_an_axis_that_does_not_magnify_noise(figure, table):
    base = next(row for row in table if row["method"] == "none")
    for ax in figure.axes[:2]:
        low, high = ax.get_ylim()
        assert high - low >= TOP1_MIN_SPAN - 1e-9
        bars = [segment for collection in ax.collections for segment in collection.get_segments()
                if len(segment) == 2 and segment[0][0] == segment[1][0]]       # vertical: the interval bars
        spans = {(round(min(s[0][1], s[1][1]), 6), round(max(s[0][1], s[1][1]), 6)) for s in bars}
        for row in table:
            if row["method"] != "none" and row["keep_rate"] < 1.0:
                bound = accuracy_interval(row)
                assert (round(100 * bound[0], 6), round(100 * bound[1], 6)) in spans, row
                assert low <= 100 * bound[0] and 100 * bound[1] <= high       # every interval inside the axis
        band = accuracy_interval(base)                                       # the untouched model's: a band
        assert any(np.allclose([patch.get_y(), patch.get_y() + patch.get_height()], [100 * band[0], 100 * band[1]])
                   for patch in ax.patches)


def test_keep_rate_labels_never_overlap(table):
    # the committed table, and the same with every method's points piled onto one place (the worst case)
    piled = [dict(row, images_per_s=400.0, macs=100_000_000, latency_ms=7.0) for row in table]
    for rows in (table, piled):
        figure = plot_tradeoff(rows)
        renderer = FigureCanvasAgg(figure).get_renderer()
        for ax in figure.axes:
            labels = [text for text in ax.texts if isinstance(text, Annotation)]
            boxes = [label.get_window_extent(renderer) for label in labels]
            frame = ax.get_window_extent(renderer)
            for first, second in itertools.combinations(boxes, 2):
                overlap_x = min(first.x1, second.x1) - max(first.x0, second.x0)
                overlap_y = min(first.y1, second.y1) - max(first.y0, second.y0)
                assert overlap_x <= 0.5 or overlap_y <= 0.5, (ax.get_title(), first, second)
            assert all(frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1 for box in boxes)
            if rows is table and ax is not figure.axes[2]:
                assert len(labels) >= 8, ax.get_title()                    # most points keep their label
        if rows is piled:
            assert len([t for t in figure.axes[0].texts if isinstance(t, Annotation)]) < len(table)


def test_within_spread_is_explained_where_it_appears(figure, table):
    assert any(row["note"] == WITHIN_SPREAD for row in table)                 # the committed table has some
    words = caption(table)
    assert '"within spread"' in words and "could not tell it from no speed-up" in words
    assert "above MACs ceiling" in words and "95% interval" in words and f"{TOP1_MIN_SPAN:g} points" in words
    texts = [text.get_text() for text in figure.texts]
    assert any('"within spread"' in text.replace("\n", " ") for text in texts)   # the caption, in the figure
    legend = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "within spread (hollow): not resolved" in legend and "above MACs ceiling: noise" in legend
    hollow = {(round(x, 6), round(y, 6)) for line in figure.axes[2].get_lines() if line.get_markerfacecolor() == "white"
              for x, y in zip(line.get_xdata(), line.get_ydata())}
    for row in table:
        if row["note"] in (WITHIN_SPREAD, ABOVE_CEILING):
            assert (round(row["keep_rate"], 6), round(row["speedup"], 6)) in hollow, row
    assert "could not tell it from no speed-up" in note_meaning(WITHIN_SPREAD)
    assert note_meaning("") == "" and note_meaning("something new") == "something new"


def test_the_caption_says_only_what_the_figure_shows(table):
    quiet = [dict(row, note="", data="imagenet/val") for row in table]       # no notes, no image count
    words = caption(quiet)
    assert "within spread" not in words and "interval" not in words and "spread of the timing rounds" in words


def test_the_explorers_measured_line_explains_its_note(table):
    from retokviz.explorer.panels import measured_html

    row = next(row for row in table if row["note"] == WITHIN_SPREAD)
    base = next(row for row in table if row["method"] == "none")
    text = measured_html(row, base, row["keep_rate"], "EViT", "sweep.csv")
    assert note_meaning(WITHIN_SPREAD) in text and "95% interval" in text


def test_the_plotly_figure_carries_the_same_intervals_and_words(table):
    pytest.importorskip("plotly")
    figure = tradeoff.tradeoff_figure(table)
    accuracy = [trace for trace in figure.data if trace.xaxis == "x" and trace.error_y.array is not None]
    assert accuracy and all(len(trace.error_y.array) == len(trace.y) for trace in accuracy)
    low, high = figure.layout.yaxis.range
    assert high - low >= TOP1_MIN_SPAN - 1e-9
    assert any("within spread" in annotation.text for annotation in figure.layout.annotations)
    speed = [trace for trace in figure.data if trace.xaxis == "x3" and trace.name == "EViT"][0]
    hollow = [symbol for symbol, row in zip(speed.marker.symbol, tradeoff.series(table)["evit"])
              if row["note"] == WITHIN_SPREAD]
    assert hollow and set(hollow) == {"circle-open"}
