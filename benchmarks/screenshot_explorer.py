"""The explorer in a real browser: the save_html page opened in headless Chromium, its sliders moved, its script
checked (the frame, the token count and the chart follow the sliders; a click follows a patch) and photographed
(results/explorer-page.png). Then the live widget: JupyterLab on loopback runs notebooks/00_tour.ipynb, the
method button and the keep-rate slider are used in the browser, and the widget is photographed
(results/explorer.png). `photograph_lessons` does the same for every lesson widget of notebooks 01-06 (each used once,
its picture checked to change, each photographed).

    apt-get install -y chromium && pip install playwright        # Playwright's own browser download is not needed
    python benchmarks/screenshot_explorer.py [--skip-lab] [--lessons build/browser]

Exits non-zero when the page misbehaves.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def browser(playwright):
    executable = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if executable is None:
        sys.exit("no Chromium found: apt-get install -y chromium")
    return playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])


def check_page(page_path: Path, shot: Path) -> None:
    """Open the page offline, move its sliders, check what changes, and photograph it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = browser(playwright)
        context = chromium.new_context(viewport={"width": 1080, "height": 700}, device_scale_factor=1,
                                       offline=True)
        page = context.new_page()
        errors: list[str] = []
        requests: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("request", lambda request: requests.append(request.url)
                if not request.url.startswith(("file:", "data:")) else None)
        page.goto(page_path.resolve().as_uri())
        page.wait_for_function("window.retokviz !== undefined && document.querySelector('#chart .main-svg')")

        def read() -> dict:
            return page.evaluate("""() => ({src: document.getElementById('frame').src,
                tokens: document.getElementById('token-count').textContent,
                rate: document.getElementById('rate-value').textContent,
                measured: document.getElementById('measured').textContent,
                lines: document.querySelectorAll('#chart .scatterlayer .trace').length})""")

        first = read()
        assert first["lines"] == len(page.evaluate("window.retokviz.data.settings")), first
        # The keep-rate slider to its lowest: another frame, fewer tokens.
        page.eval_on_selector("#rate", "el => { el.value = 0; el.dispatchEvent(new Event('input')); }")
        low = read()
        assert low["src"] != first["src"] and int(low["tokens"]) < int(first["tokens"]), (first, low)
        # With a sweep table behind the page, its measured line follows the keep rate too.
        if page.evaluate("window.retokviz.data.settings.some((s) => s.measured)"):
            assert "measured" in first["measured"] and low["measured"] != first["measured"], (first, low)
        # The block slider back to block 1, the view to pieces.
        page.eval_on_selector("#block", "el => { el.value = 1; el.dispatchEvent(new Event('input')); }")
        assert read()["src"] != low["src"]
        page.check("#views input[value='1']")
        # A keep rate in between for the picture, a click on a patch: its lineage is listed.
        page.eval_on_selector("#rate", "el => { el.value = 3; el.dispatchEvent(new Event('input')); }")
        page.eval_on_selector("#block", "el => { el.value = el.max; el.dispatchEvent(new Event('input')); }")
        page.check("#views input[value='0']")
        # Follow the patch whose token carries the most patches leaving the last block (a merged piece).
        row, col, rows, cols = page.evaluate("""() => {
            const R = window.retokviz, s = R.data.settings[R.state.rate], owner = s.owner[R.state.block];
            const counts = {}; owner.flat().forEach((t) => { if (t >= 0) counts[t] = (counts[t] || 0) + 1; });
            let best = [0, 0], most = -1;
            owner.forEach((line, r) => line.forEach((t, c) => { if (t >= 0 && counts[t] > most) { most = counts[t]; best = [r, c]; } }));
            return [best[0], best[1], R.data.grid[0], R.data.grid[1]]; }""")
        box = page.locator("#overlay").bounding_box()
        page.mouse.click(box["x"] + box["width"] * (col + 0.5) / cols, box["y"] + box["height"] * (row + 0.5) / rows)
        items = page.locator("#lineage li").count()
        assert items == page.evaluate("window.retokviz.data.num_blocks"), items
        assert not errors, errors
        assert not requests, f"the page asked the network for {requests}"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        chromium.close()
    print(f"page ok: sliders, view toggle, chart, measured line and lineage work offline; screenshot {shot}")


def check_geometry_and_click(page, cell, picture) -> None:
    """The explorer stays still: its controls keep their place whatever view is shown; a click on the picture
    follows the patch under it, live, and Escape stops following."""
    controls = {name: cell.locator(".widget-slider", has_text=name).first for name in ("keep rate", "block")}
    controls["method"] = cell.get_by_role("button", name="EViT", exact=True)
    controls["picture"] = picture

    def places() -> dict:
        return {name: tuple(round(v) for v in (locator.bounding_box() or {}).values()) for name, locator in controls.items()}

    before = places()
    seen = [before]
    for view in ("pieces", "attention", "removed background", "status"):
        cell.get_by_role("button", name=view, exact=True).click()
        time.sleep(1.0)
        seen.append(places())
    moved = [(view, name) for view, now in zip(("pieces", "attention", "removed background", "status"), seen[1:])
             for name in controls if now[name] != before[name]]
    assert not moved, f"controls moved when the view changed: {moved} ({before} -> {seen[1:]})"
    follow = cell.get_by_role("checkbox", name="follow a patch")
    assert not follow.is_checked()
    box = picture.bounding_box()
    picture.click(position={"x": box["width"] * 0.3, "y": box["height"] * 0.6})
    page.wait_for_function("el => el.checked", arg=follow.element_handle(), timeout=15_000)
    lineage = cell.locator(".widget-html", has_text="block 0").first
    lineage.wait_for(timeout=15_000)
    assert controls["keep rate"].bounding_box() and places()["keep rate"] == before["keep rate"]
    picture.press("Escape")
    page.wait_for_function("el => !el.checked", arg=follow.element_handle(), timeout=15_000)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


NOTEBOOK = "notebooks/00_tour.ipynb"          # the notebook whose explorer is driven, relative to the repository
SAVED = ROOT / "notebooks" / "build" / "tour.html"   # the page its last cell writes (the kernel runs in notebooks/)


def start_lab(scratch: Path, **env: str) -> tuple[subprocess.Popen, int, str]:
    """JupyterLab on a free loopback port with a token, serving the repository, with settings of its own under
    `scratch`: never autosave (notebooks stay stored without outputs), start the kernel without asking, no news
    prompt, workspaces kept out of the user's; quick mode, and `env` added. Returns (process, port, token)."""
    port, token = free_port(), secrets.token_hex(16)
    for plugin, values in (("docmanager-extension/plugin", {"autosave": False, "autoStartDefaultKernel": True}),
                           ("apputils-extension/notification", {"fetchNews": "false"})):
        path = scratch / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    lab = subprocess.Popen([str(ROOT / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
                            f"--port={port}", f"--IdentityProvider.token={token}", "--allow-root",
                            "--ServerApp.port_retries=0", f"--notebook-dir={ROOT}",
                            f"--LabApp.user_settings_dir={scratch / 'settings'}",
                            f"--LabApp.workspaces_dir={scratch / 'workspaces'}"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "RETOKVIZ_QUICK": "1", **env}, start_new_session=True)
    return lab, port, token


def run_all_cells(page, url: str, timeout: float, kernel_dialog: float) -> float:
    """Open the notebook at `url` in `page` (retrying while Lab starts), answer the kernel dialog if it comes within
    `kernel_dialog` seconds, wait for the kernel, fold the file browser away (the widgets get the width) and click
    Run All Cells. Returns the time it was clicked."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.time() + 60
    while True:
        try:
            page.goto(url)
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    page.wait_for_selector(".jp-Notebook", timeout=timeout * 1000)
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    try:   # JupyterLab may ask which kernel to start
        select.wait_for(timeout=kernel_dialog * 1000)
        select.click()
    except PlaywrightTimeout:
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout * 1000)
    page.keyboard.press("Escape")
    page.keyboard.press("Control+b")
    started = time.time()
    page.get_by_text("Run", exact=True).first.click()
    page.get_by_text("Run All Cells", exact=True).first.click()
    return started


def photograph_lab(shot: Path, timeout: float = 240, notebook: str = NOTEBOOK, saved: Path = SAVED) -> None:
    """Run `notebook` in JupyterLab (loopback, a token), use its explorer in the browser as a reader would (a
    method button, the keep-rate slider), check that the widget and a figure rendered, that the picture and the
    measured line changed, that the trade-off panel shows its figure (then close it), and that no cell printed an
    error, and photograph the widget."""
    from playwright.sync_api import sync_playwright

    checkpoints_existed = (ROOT / "notebooks" / ".ipynb_checkpoints").exists()
    scratch = Path(tempfile.mkdtemp(prefix="retokviz-lab-"))
    lab, port, token = start_lab(scratch)
    try:
        with sync_playwright() as playwright:
            chromium = browser(playwright)
            page = chromium.new_page(viewport={"width": 1500, "height": 1000})
            console: list[str] = []   # the browser's console, kept for a failure's report
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            started = run_all_cells(page, f"http://127.0.0.1:{port}/lab/tree/{notebook}?token={token}", timeout,
                                    kernel_dialog=15)
            while not (saved.exists() and saved.stat().st_mtime > started):
                if time.time() > started + timeout:
                    page.screenshot(path=str(shot.with_name("explorer-lab-timeout.png")), full_page=True)
                    raise TimeoutError(f"the notebook did not finish in {timeout} s (what the page showed: "
                                       f"{shot.with_name('explorer-lab-timeout.png')})")
                time.sleep(1)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout * 1000)
            page.locator(".jp-Notebook").first.press("Control+Home")
            for answer in ("No", "Dismiss"):   # JupyterLab's news prompt, if it shows
                button = page.get_by_role("button", name=answer)
                if button.count():
                    button.first.click()
            # The explorer's cell (JupyterLab draws a cell's widgets when it comes into view; the picture, a widget
            # of its own, loads its script then).
            cell = page.locator(".jp-Cell", has=page.locator(".widget-slider", has_text="keep rate")).first
            try:
                cell.scroll_into_view_if_needed()
                cell.locator(".retokviz-picture img").first.wait_for(timeout=30_000)
            except Exception:
                cell.screenshot(path=str(shot.with_name("explorer-lab-missing.png")))
                found = page.evaluate("""() => ({pictures: document.querySelectorAll('.retokviz-picture').length,
                    errors: [...document.querySelectorAll('.jp-OutputArea-output')].map(e => e.innerText)
                        .filter(t => /rror|not render|Failed/.test(t)).map(t => t.slice(0, 400))})""")
                broken = page.get_by_text("Click to show javascript error")
                if broken.count():
                    broken.first.click()
                    time.sleep(1)
                    found["detail"] = page.evaluate(
                        "() => [...document.querySelectorAll('.jupyter-widgets-error-widget')].map(e => e.innerText)")
                shot.with_name("explorer-lab-missing.txt").write_text(repr(found) + "\n" + "\n".join(console))
                raise
            # In the browser, as a reader would: the ImagePiece and status buttons, then the keep-rate slider.
            cell.get_by_role("button", name="ImagePiece", exact=True).click()
            cell.get_by_role("button", name="status", exact=True).click()
            handle = cell.locator(".widget-slider", has_text="keep rate").locator(".noUi-handle").first
            value = cell.locator(".widget-slider", has_text="keep rate").locator(".widget-readout").first
            picture = cell.locator(".retokviz-picture img").first
            measured = cell.locator(".widget-html", has_text="the untouched throughput").first
            time.sleep(1.5)                       # the clicks above redraw first
            before, src = value.text_content().strip(), picture.get_attribute("src")
            measured_before = measured.text_content()
            assert "ImagePiece at keep" in measured_before, measured_before
            handle.focus()
            # Two steps down if there is room, else two up: the readout and the picture must follow.
            key = "ArrowLeft" if float(before) >= 0.45 else "ArrowRight"
            for _ in range(2):
                page.keyboard.press(key)
            page.wait_for_function("([el, old]) => el.textContent.trim() !== old", arg=[value.element_handle(), before],
                                   timeout=30_000)
            page.wait_for_function("([el, old]) => el.src !== old", arg=[picture.element_handle(), src],
                                   timeout=30_000)
            time.sleep(1.5)
            assert before != value.text_content().strip()
            # The measured line (the sweep table's row for this setting) follows the slider too.
            assert measured.text_content() != measured_before, measured_before
            check_geometry_and_click(page, cell, picture)
            # The trade-off panel the notebook opened shows its figure; a click on its title closes it.
            panel = cell.locator(".jupyter-widget-Collapse", has_text="measured trade-off").first
            assert "jupyter-widget-Collapse-open" in (panel.get_attribute("class") or ""), "the panel is not open"
            assert panel.locator(".widget-image").first.get_attribute("src"), "the trade-off panel shows no picture"
            panel.locator(".jupyter-widget-Collapse-header").first.click()
            page.wait_for_function("el => !el.classList.contains('jupyter-widget-Collapse-open')",
                                   arg=panel.element_handle(), timeout=10_000)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count()
            assert errors == 0, f"{errors} cell(s) of {notebook} printed an error in JupyterLab"
            figures = page.locator(".jp-RenderedImage img").count()
            assert figures > 0, f"{notebook} shows no figure as a picture in JupyterLab"
            assert page.get_by_text("<Figure size").count() == 0, "a figure was printed as text"
            shot.parent.mkdir(parents=True, exist_ok=True)
            cell.locator(".jp-OutputArea").first.screenshot(path=str(shot))
            chromium.close()
        print(f"live widget photographed in JupyterLab: {shot}")
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
        if not checkpoints_existed:
            shutil.rmtree(ROOT / "notebooks" / ".ipynb_checkpoints", ignore_errors=True)


# --- the lesson widgets of notebooks 01-06 in JupyterLab ------------------------------------------------------

# One cell per lesson widget, each the widget as its cell's last line, in quick form (two generated images, a tiny
# training run); the last cell leaves a file that says the notebook ran to its end.
LESSON_CELLS = {
    "setup": "import retokviz as rv\nfrom retokviz.tutorial import widgets",
    "hiding": "widgets.hiding_lesson(num_images=2, image=1)",
    "evit": "widgets.evit_lesson(num_images=2, image=1, keep_rate=0.7)",
    "imagepiece": "widgets.imagepiece_lesson(num_images=2, image=1)",
    "tome": "widgets.tome_lesson(num_images=2, image=1)",
    "tradeoff": ("from retokviz.views.tradeoff import tradeoff_view\n\n"
                 "tradeoff_view(rv.bundled.sweep_table('showcase'))"),
    "training": (
        "import tempfile\n\nimport timm\nimport torch\nfrom torch.utils.data import TensorDataset\n\n"
        "torch.manual_seed(0)\n"
        "tiny = timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=64, patch_size=16, embed_dim=48,\n"
        "                         depth=2, num_heads=3, num_classes=10)\n"
        "data = TensorDataset(torch.randn(32, 3, 64, 64), torch.arange(32) % 10)\n"
        "config = rv.TrainConfig(epochs=2, batch_size=16, lr=1e-3, warmup_epochs=0, keep_warmup_epochs=0,\n"
        "                        keep_decay_epochs=1, label_smoothing=0.0, device='cpu', out_dir=tempfile.mkdtemp())\n"
        "training = widgets.training_lesson(tiny, data, data, config, rv.EViT(keep_rate=0.5), num_images=1)\n"
        "training.run(until=1)                   # paused after its first epoch: the reader presses go on\n"
        "training"),
    "done": "from pathlib import Path\n\nPath('ran.txt').write_text('the notebook ran to its end')",
}


def _lesson_notebook(folder: Path) -> Path:
    """The notebook of LESSON_CELLS, stored as the project stores notebooks (no outputs)."""
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in LESSON_CELLS.values()])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "lessons.ipynb"
    nbformat.write(notebook, path)
    return path


def _moved(page, cell, picture, act, wait_for: str | None = None, timeout: float = 30_000) -> tuple[str, str]:
    """Do `act()` on a lesson's cell as a reader would; wait until `picture` (an img locator) shows another picture
    (and, with `wait_for`, until the cell shows that text). Returns the picture's src before and after."""
    picture.wait_for(timeout=timeout)
    before = picture.get_attribute("src")
    act()
    page.wait_for_function("([el, old]) => el.src && el.src !== old", arg=[picture.element_handle(), before],
                           timeout=timeout)
    if wait_for is not None:
        cell.get_by_text(wait_for).first.wait_for(timeout=timeout)
    return before, picture.get_attribute("src")


def _use_lessons(page, cell_of, moved: dict) -> None:
    """Use each lesson widget of LESSON_CELLS in the page as a reader would; note its picture's src before and after
    in `moved`."""

    def image(cell):
        return cell.locator("img.widget-image").first

    def picture(cell):
        return cell.locator(".retokviz-picture img").first

    def click_at(locator, x: float, y: float):
        return lambda: locator.click(position={"x": locator.bounding_box()["width"] * x,
                                               "y": locator.bounding_box()["height"] * y})

    def keys(slider, key: str, times: int):
        def press():
            slider.locator(".noUi-handle").first.focus()
            for _ in range(times):
                page.keyboard.press(key)
        return press

    # 01: a click on a patch hides it
    cell = cell_of("hiding")
    moved["hiding"] = _moved(page, cell, picture(cell), click_at(picture(cell), 0.05, 0.05),
                             "1 patches hidden")
    # 02: the keep-rate slider, two steps down
    cell = cell_of("evit")
    rate = cell.locator(".widget-slider", has_text="keep rate").first
    moved["evit"] = _moved(page, cell, image(cell), keys(rate, "ArrowLeft", 2))
    assert rate.locator(".widget-readout").first.text_content().strip() == "0.60"
    # 03: the next-step button, then a click on a patch to follow it
    cell = cell_of("imagepiece")
    moved["imagepiece"] = _moved(page, cell, picture(cell),
                                 lambda: cell.get_by_role("button", name="next step").click(),
                                 "tokens merged into another")
    _moved(page, cell, picture(cell), click_at(picture(cell), 0.5, 0.5), "patch (row")
    # 04: r, one step up
    cell = cell_of("tome")
    moved["tome"] = _moved(page, cell, image(cell), keys(cell.locator(".widget-slider").first, "ArrowRight", 1))
    # 05: one method picked alone in the trade-off view
    cell = cell_of("tradeoff")
    moved["tradeoff"] = _moved(page, cell, image(cell),
                               lambda: cell.locator("select[multiple]").first.select_option(index=0))
    # 06: go on, from the pause after epoch 1 to the end; the plot gains an epoch and the board is drawn anew
    cell = cell_of("training")
    moved["training"] = _moved(page, cell, image(cell),
                               lambda: cell.get_by_role("button", name="go on").click(), "done: 2 epochs")
    cell.get_by_text("beside showcase-evit-0.7").first.wait_for(timeout=30_000)


def photograph_lessons(shots: Path, timeout: float = 240) -> dict[str, tuple[str, str]]:
    """Run a small notebook with every lesson widget (LESSON_CELLS) in JupyterLab, use each in Chromium as a reader
    would (a click on the picture, a slider moved by the keyboard, a button, a picker), check that its picture
    changed and that no cell shows an error, and photograph each to shots/lesson-<name>.png.

    Returns:
        {lesson: (picture src before, after)}.
    """
    from playwright.sync_api import sync_playwright

    (ROOT / "build").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="lessons-", dir=ROOT / "build"))   # under the repository: Lab serves it
    notebook = _lesson_notebook(folder)
    ran = folder / "ran.txt"
    lab, port, token = start_lab(folder / "lab", OMP_NUM_THREADS="1")
    moved: dict[str, tuple[str, str]] = {}
    try:
        with sync_playwright() as playwright:
            chromium = browser(playwright)
            # tall: a lesson's whole output fits on the screen, for its photograph
            page = chromium.new_page(viewport={"width": 1400, "height": 2200})
            console: list[str] = []
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            started = run_all_cells(
                page, f"http://127.0.0.1:{port}/lab/tree/{notebook.relative_to(ROOT).as_posix()}?token={token}",
                timeout, kernel_dialog=3)
            while not ran.exists():
                if time.time() > started + timeout:
                    page.screenshot(path=str(shots / "lesson-timeout.png"), full_page=True)
                    raise TimeoutError(f"the lesson notebook did not finish in {timeout} s "
                                       f"(what the page showed: {shots / 'lesson-timeout.png'})")
                time.sleep(0.5)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout * 1000)
            cells = page.locator(".jp-Notebook .jp-Cell")
            names = list(LESSON_CELLS)

            def cell_of(name: str):
                cell = cells.nth(names.index(name))
                cell.scroll_into_view_if_needed()
                cell.locator(".jp-OutputArea-output").first.wait_for(timeout=30_000)
                return cell

            try:
                _use_lessons(page, cell_of, moved)
            except Exception:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "lesson-failed.png"), full_page=True)
                (shots / "lesson-failed.txt").write_text("\n".join(console))
                raise
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count()
            broken = page.locator(".jupyter-widgets-error-widget").count()
            assert errors == 0 and broken == 0, (f"{errors} cell(s) printed an error, {broken} widget(s) failed to "
                                                 "show\n" + "\n".join(console[-20:]))
            shots.mkdir(parents=True, exist_ok=True)
            for name in moved:
                cell = cell_of(name)
                cell.locator(".jp-OutputArea").first.screenshot(path=str(shots / f"lesson-{name}.png"))
            chromium.close()
        for name, (before, after) in moved.items():
            assert before != after, f"the {name} lesson's picture did not change"
        print(f"every lesson widget moved in JupyterLab: {', '.join(moved)}; screenshots in {shots}")
        return moved
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=ROOT / "build" / "explorer.html",
                        help="where to write the page (made here from the bundled models)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "explorer-page.png",
                        help="the page's screenshot")
    parser.add_argument("--lab-out", type=Path, default=ROOT / "results" / "explorer.png",
                        help="the live widget's screenshot")
    parser.add_argument("--skip-lab", action="store_true", help="photograph the page only")
    parser.add_argument("--lessons", type=Path, default=None,
                        help="also use every lesson widget in JupyterLab and photograph each into this folder")
    args = parser.parse_args()
    from retokviz.explorer import explore

    ex = explore()
    ex.set(model="showcase-imagepiece-0.7-stem", method="imagepiece", image=1)
    ex.save_html(args.page)
    check_page(args.page, args.out)
    if not args.skip_lab:
        photograph_lab(args.lab_out)
    if args.lessons is not None:
        photograph_lessons(args.lessons)


if __name__ == "__main__":
    main()
