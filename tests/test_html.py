"""The standalone explorer page: every frame inside, nothing loaded from anywhere."""
from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import pytest
import torch

from conftest import tiny_vit
from retokviz.explorer import explore
from retokviz.views import html

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")


class Loads(HTMLParser):
    """Collects what a page's elements would load (src, href, srcset, data) and its script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[tuple[str, str, str]] = []
        self.scripts: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
        for name in ("src", "href", "srcset", "data", "action", "poster"):
            if attributes.get(name):
                self.references.append((tag, name, attributes[name]))


def page_data(text: str) -> dict:
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.DOTALL)
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ex = explore(num_images=2)
    ex.set(model="showcase-imagepiece-0.7-stem", method="imagepiece", image=1)
    path = ex.save_html(tmp_path_factory.mktemp("page") / "deep" / "explorer.html")
    return ex, path, path.read_text(encoding="utf-8")


def test_the_page_holds_every_frame_of_every_keep_rate_block_and_view(saved):
    ex, path, text = saved
    data = page_data(text)
    blocks = len(ex.model.blocks)
    assert [s["keep_rate"] for s in data["settings"]] == [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert data["views"] == ["status", "pieces", "attention", "removed"] and data["num_blocks"] == blocks
    frames = [data["images"][index] for s in data["settings"] for view in data["views"]
              for index in s["frames"][view]]
    assert len(frames) == 8 * blocks * 4 == html.frame_count(
        [html.Setting(0.5, ex.run.arrays, (), 0)] * 8)
    for frame in frames:
        assert frame.startswith("data:image/png;base64,")
        assert base64.b64decode(frame.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    tokens = [s["num_tokens"][-1] for s in data["settings"]]
    assert tokens == sorted(tokens) and tokens[0] < tokens[-1] == 144       # fewer tokens at lower keep rates
    assert all(len(s["top"]) == 3 and s["macs"] > 0 for s in data["settings"])
    assert data["untouched"] and data["truth"] == ex.session.label(ex.checkpoint.value,
                                                                   ex.session.gallery.entries[1].label)
    assert len(data["settings"][0]["owner"]) == blocks                      # the lineage's arrays


def test_each_keep_rate_carries_the_explorers_measured_line(saved):
    ex, _, text = saved
    data = page_data(text)
    lines = [s["measured"] for s in data["settings"]]
    for setting, line in zip(data["settings"], lines):
        ex.keep_rate.value = setting["keep_rate"]
        assert line == ex.measured.value                                   # what the explorer shows there
    assert all("the untouched throughput" in line for line in lines)
    # the table swept 0.2 to 1.0: every keep rate of the page has its own row
    assert "ImagePiece at keep 0.3:" in lines[0] and "the slider is at" not in lines[0]
    assert "ImagePiece at keep 0.8:" in lines[5] and "the slider is at" not in lines[5]
    assert len(set(lines)) == 8                                             # it follows the slider


def test_the_page_loads_nothing_from_the_network(saved):
    _, _, text = saved
    parser = Loads()
    parser.feed(text)
    assert parser.references == [], parser.references        # no src / href at all: everything is inline
    assert all("src" not in script for script in parser.scripts)
    assert not re.search(r"<(link|iframe|img)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "plotly.js" in text and "Plotly.react" in text      # plotly.js itself is inlined


def test_the_page_is_one_html_document_whose_data_cannot_close_its_script(saved):
    _, _, text = saved
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    data_script = re.search(r'id="data">(.*?)</script>', text, re.DOTALL).group(1)
    assert "</" not in data_script


def test_views_that_cannot_be_drawn_are_left_out(tmp_path):
    ex = explore(tiny_vit("deit", depth=2, grid=4), torch.randn(1, 3, 64, 64), method="tome")   # ToMe: no scores
    path = ex.save_html(tmp_path / "page.html", keep_rates=(0.5, 1.0))
    data = page_data(path.read_text())
    assert data["views"] == ["status", "pieces", "removed"]              # no mask: "removed" in one colour
    keys = [set(keys) for s in data["settings"] for keys in s["legend_keys"]["removed"]]
    assert all("no mask" in k and not k & {"background", "object"} for k in keys)   # no split without a mask
    assert any("let go" in k for k in keys)                                           # ToMe at 0.5 merged some
    assert [s["measured"] for s in data["settings"]] == ["", ""]          # no sweep table for this model
    assert sum(len(s["frames"][v]) for s in data["settings"] for v in data["views"]) == 2 * 2 * 3
    assert all(0 <= i < len(data["images"]) for s in data["settings"] for v in data["views"] for i in s["frames"][v])


def test_a_page_needs_a_setting():
    with pytest.raises(ValueError, match="at least one setting"):
        html.page([])
