"""The explorer in a real browser: JupyterLab runs notebook 00 in headless Chromium and a reader's slider moves,
and every lesson widget (notebooks 01-06) is used once and its picture changes;
a page saved by save_html works offline, without a kernel. Screenshots go under build/browser/.

Needs Debian's chromium (`make test` installs it with apt-get where it runs as root) and the Python Playwright
package (a dev dependency); Playwright's own browser download is not used. Without them the tests are skipped,
with the reason printed in pytest's summary (`-rs` is on).
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "browser"


def _driver():
    """benchmarks/screenshot_explorer.py, which drives Chromium for the README's screenshots too."""
    if shutil.which("chromium") is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium; `make test` does it as root)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright package is missing (pip install -e '.[dev]')")
    return load_script("screenshot_explorer")


def test_a_saved_page_moves_its_sliders_offline_without_a_kernel(tmp_path):
    driver = _driver()
    import retokviz as rv

    ex = rv.explore(num_images=2)
    ex.set(model="showcase-imagepiece-0.7-stem", method="imagepiece", image=1)
    page = tmp_path / "explorer.html"
    ex.save_html(page)
    assert ex.tradeoff is not None                  # a sweep table: the page carries a measured line per keep rate
    # asserts: frames, token counts and the measured line follow the sliders, no request
    driver.check_page(page, SHOTS / "page.png")
    assert (SHOTS / "page.png").stat().st_size > 10_000


def test_notebook_00_runs_in_jupyterlab_and_its_explorer_follows_the_slider():
    driver = _driver()
    shot = SHOTS / "lab.png"
    driver.photograph_lab(shot, timeout=300)        # asserts: picture and readout change, a figure, no error output
    assert shot.stat().st_size > 10_000


def test_a_saved_compare_page_moves_every_column_with_its_one_keep_rate_slider(tmp_path):
    _driver()                                       # skips without chromium or playwright
    import retokviz as rv
    from playwright.sync_api import sync_playwright

    shot = SHOTS / "compare.png"
    board = rv.compare(num_images=1, keep_rate=0.7)
    page_path = board.save_html(tmp_path / "compare.html")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            context = chromium.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1,
                                           offline=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(page_path.resolve().as_uri())
            page.wait_for_function("window.retokviz !== undefined")

            def read() -> dict:
                return page.evaluate("""() => ({
                    src: [...document.querySelectorAll('.columns img')].map((img) => img.src),
                    tokens: [...document.querySelectorAll('.columns .token-count')].map((b) => +b.textContent),
                    tops: [...document.querySelectorAll('.columns img')].map((img) => img.getBoundingClientRect().top),
                    legends: [...document.querySelectorAll('.columns .legend')].map((l) => l.getBoundingClientRect().top),
                    rate: document.getElementById('rate-value').textContent})""")

            first = read()
            assert len(first["src"]) == len(board.methods) == 3 and first["rate"] == "0.70", first
            assert first["tokens"] == [column.shown()["tokens"] for column in board.columns]   # as the widget shows
            assert len(set(first["tops"])) == 1 and len(set(first["legends"])) == 1     # columns aligned
            assert all(legend > top for legend, top in zip(first["legends"], first["tops"]))   # legends under
            page.eval_on_selector("#rate", "el => { el.value = 2; el.dispatchEvent(new Event('input')); }")   # 0.5
            moved = read()
            assert moved["rate"] == "0.50"
            assert all(after != before for after, before in zip(moved["src"], first["src"])), (first, moved)
            assert all(after < before for after, before in zip(moved["tokens"], first["tokens"]))
            board.set(keep_rate=0.5)
            assert moved["tokens"] == [column.shown()["tokens"] for column in board.columns]
            assert not errors, errors
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            chromium.close()
    assert shot.stat().st_size > 10_000


def test_every_lesson_widget_moves_in_jupyterlab_and_its_picture_changes():
    driver = _driver()
    # asserts: each lesson's picture changes when used as a reader would, no cell shows an error, no widget fails
    moved = driver.photograph_lessons(SHOTS, timeout=180)
    assert set(moved) == {"hiding", "evit", "imagepiece", "tome", "tradeoff", "training"}
    for name in moved:
        assert (SHOTS / f"lesson-{name}.png").stat().st_size > 5_000, name
