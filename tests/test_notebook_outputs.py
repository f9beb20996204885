"""The notebooks run top to bottom in a fresh kernel, and every figure they show is a picture, not its text repr.

A matplotlib figure made without pyplot, in a kernel where nothing has run `%matplotlib inline`, displays as the
text `<Figure size 720x290 with 3 Axes>`: these tests execute each notebook as a new JupyterLab kernel would, and
read what it displayed.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PICTURES = ("image/png", "image/svg+xml")


def kernel_env() -> dict[str, str]:
    """The environment of a fresh kernel on a CI machine: quick mode, one thread, no GPU, and no MPLBACKEND
    inherited from the test run (a JupyterLab kernel starts without one)."""
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env.update(RETOKVIZ_QUICK="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", TQDM_DISABLE="1")
    return env


def execute(notebook: nbformat.NotebookNode, directory: Path) -> nbformat.NotebookNode:
    """Run every cell of `notebook` in a new python3 kernel started in `directory`; raises on a cell's error."""
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(directory)}})
    client.execute(env=kernel_env())
    return notebook


def text_figures(output: dict) -> bool:
    """Whether one cell output is a figure shown as its text repr (no picture beside it)."""
    data = output.get("data", {})
    return data.get("text/plain", "").startswith("<Figure size") and not any(kind in data for kind in PICTURES)


def pictures(output: dict) -> int:
    """The number of pictures (PNG or SVG) one cell output shows: a front end draws at most one per output."""
    return int(any(kind in output.get("data", {}) for kind in PICTURES))


def problems(notebook: nbformat.NotebookNode) -> list[str]:
    """What is wrong with an executed notebook's outputs, in words: figures printed as text, or no picture."""
    found, shown = [], 0
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if text_figures(output):
                found.append(f"cell {index} shows a figure as text: {output['data']['text/plain']!r}")
            shown += pictures(output)
    if not shown:
        found.append("the notebook shows no picture at all")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_every_notebook_runs_in_a_fresh_kernel_and_shows_its_figures_as_pictures(path):
    start = time.monotonic()
    notebook = execute(nbformat.read(path, as_version=4), path.parent)
    assert problems(notebook) == []
    assert time.monotonic() - start < 60, f"{path.name} took {time.monotonic() - start:.0f} s in quick mode"


def code_notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


# A figure of the library's own class, as every plot returns it (no model to build).
RESULT = """
from retokviz.views.figure import Figure
def plot_line():
    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    return figure
"""


def test_the_check_catches_a_text_figure_and_library_figures_show_once_with_or_without_inline(tmp_path):
    notebook = execute(code_notebook(
        "from matplotlib.figure import Figure\nFigure(figsize=(2, 2)).subplots(1, 3)[0].figure",  # the old defect
        RESULT,
        "plot_line()",                                      # a fresh kernel: no pyplot, no inline backend
        "%matplotlib inline",
        "plot_line()",                                      # inline on: still one picture, not two
    ), tmp_path)
    plain, _, fresh, _, inline = (cell["outputs"] for cell in notebook.cells)
    assert [text_figures(output) for output in plain] == [True]
    assert problems(code_notebook()) == ["the notebook shows no picture at all"]
    for outputs in (fresh, inline):
        assert not any(text_figures(output) for output in outputs)
        assert sum(pictures(output) for output in outputs) == 1, outputs
