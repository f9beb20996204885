"""The README and docs/ are code: every ```python block in them runs as written, offline, in a fresh interpreter,
and prints no warning; every relative link resolves; the README stays short enough to read in five minutes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "data" / "README.md"]
BLOCKS = [(page, block) for page in PAGES
          for block in re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.MULTILINE | re.DOTALL)]


def test_the_readme_has_python_snippets_and_is_short():
    assert sum(page == README for page, _ in BLOCKS) >= 2
    assert len(README.read_text().splitlines()) <= 150


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{p.relative_to(ROOT)}-{i}" for i, (p, _) in
                                                             enumerate(BLOCKS)])
def test_a_snippet_runs_as_written_without_warnings(index, tmp_path):
    page, block = BLOCKS[index]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "MPLBACKEND": "agg"}
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    where = f"{page.relative_to(ROOT)} snippet:\n{block}"
    assert done.returncode == 0, f"{where}\n{done.stderr[-3000:]}"
    assert "Warning" not in done.stderr, f"{where}\nprinted a warning:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    missing = [link for link in local if not (page.parent / link).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"
