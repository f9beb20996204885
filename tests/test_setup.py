"""The set-up: pyproject, environment.yml, Makefile, CI entry point, README, and `make lab` itself."""
from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
NOTEBOOK_ONLY = {"jupyterlab", "ipywidgets", "plotly", "nbval"}


def names(requirements):
    return {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_dependencies_are_split_so_the_library_needs_no_jupyter():
    core = names(PROJECT["dependencies"])
    extras = PROJECT["optional-dependencies"]
    assert {"torch", "timm", "matplotlib", "pillow"} <= core
    assert not core & NOTEBOOK_ONLY
    assert {"jupyterlab", "ipywidgets", "plotly"} <= names(extras["notebooks"])
    assert {"retokviz", "pytest", "hypothesis", "nbval"} <= names(extras["dev"])
    assert "retokviz[notebooks]" in extras["dev"]
    torch_requirement = next(r for r in PROJECT["dependencies"] if r.startswith("torch"))
    assert "==" not in torch_requirement, "torch is left for pip to resolve with torchvision"


def test_the_library_imports_without_the_notebook_packages():
    blocker = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in {'jupyterlab', 'ipywidgets', 'plotly', 'nbval', 'IPython'}:\n"
               "            raise ImportError('blocked: ' + name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "import retokviz, retokviz.sweep.run, retokviz.views.static, retokviz.images\n"
               "print(sorted(retokviz.__all__))\n")
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "'EViT'" in done.stdout


def test_environment_yml_agrees_with_pyproject():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    python = next(d for d in conda if d.startswith("python"))
    assert python.removeprefix("python") == PROJECT["requires-python"]
    assert "pip" in conda and len(conda) == 2, "conda brings only python and pip; pip brings the rest"
    editable = [line for line in pip if line.startswith("-e ")]
    assert editable == ["-e .[notebooks]"], "the same install as `make lab`"
    extras = re.search(r"\[(.*)\]", editable[0]).group(1).split(",")
    assert set(extras) <= set(PROJECT["optional-dependencies"])
    others = names(line for line in pip if not line.startswith("-e "))
    assert others <= names(PROJECT["dependencies"]) | names(PROJECT["optional-dependencies"]["notebooks"])
    makefile = (ROOT / "Makefile").read_text()
    assert "'.[$*]'" in makefile and "installed-notebooks" in makefile


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    assert re.search(r"^exec make test$", ci, re.M)
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _open_when_listening(url: str, seconds: float = 30.0):
    """urlopen, retried while the server that printed the URL is still binding its port."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return urllib.request.urlopen(url, timeout=30)
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_make_lab_serves_jupyterlab_on_the_notebooks():
    """`make lab`, as the README says, with only a port and token chosen for the test."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    command = ["make", "lab", f"LAB_ARGS=--port={port} --ServerApp.port_retries=0"]
    lab = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in lab.stdout], daemon=True).start()
    seen = []
    try:
        url = None
        while url is None:
            line = lines.get(timeout=180)
            seen.append(line)
            match = re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=(\w+)", line)
            url, token = (match.group(0), match.group(1)) if match else (None, None)
        with _open_when_listening(url) as page:
            assert page.status == 200 and "JupyterLab" in page.read().decode()
        api = f"http://127.0.0.1:{port}/api/contents?token={token}"
        with urllib.request.urlopen(api, timeout=30) as listing:
            served = {item["name"] for item in __import__("json").load(listing)["content"] if item["type"] == "notebook"}
        assert served == {path.name for path in (ROOT / "notebooks").glob("*.ipynb")}
    except queue.Empty:
        raise AssertionError("make lab printed no URL in 180 s:\n" + "".join(seen[-30:]))
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)


def test_notebooks_are_stored_clean_import_the_package_and_assert_what_they_show():
    import json

    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 2
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        code = [cell for cell in cells if cell["cell_type"] == "code"]
        assert all(not cell["outputs"] and cell["execution_count"] is None for cell in code), \
            f"{path.name} is stored with outputs"
        source = "\n".join("".join(cell["source"]) for cell in code)
        assert "import retokviz as rv" in source and "sys.path" not in source, path.name
        assert re.search(r"^\s*assert ", source, re.MULTILINE), f"{path.name} asserts nothing"
