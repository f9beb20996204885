"""The explorer in a real browser: JupyterLab runs notebook 00 in headless Chromium and a reader's slider moves;
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
