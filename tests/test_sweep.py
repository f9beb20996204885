"""The keep-rate sweep: its table, resuming, refusals before any work, the noise flags and the plots.

Every sweep here is a quick one on the bundled clutter checkpoint (4 blocks, 8 x 8 patches): seconds on a CPU.
Nothing asserts a timing figure, only that the figures are there and consistent with each other.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import retokviz as rv
from conftest import tiny_vit
from retokviz.models.checkpoints import resolve_checkpoint
from retokviz.methods.compose import token_counts
from retokviz.sweep import COLUMNS, SweepConfig, TableError, read_table, sweep
from retokviz.sweep import models as sweep_models
from retokviz.sweep import run as sweep_run
from retokviz.sweep.__main__ import main
from retokviz.sweep.attention import EXPLICIT, attention_kernel, fused_attention
from retokviz.sweep.grid import macs_and_tokens
from retokviz.sweep.noise import ABOVE_CEILING, WITHIN_SPREAD, caveats, note
from retokviz.sweep.timing import time_interleaved
from retokviz.sweep.report import format_markdown

CHECKPOINT = "small-baseline"
METHODS = ("evit", "imagepiece", "tome")
RATES = (1.0, 0.7, 0.5)
SETTINGS = dict(checkpoints=[CHECKPOINT], methods=METHODS, keep_rates=RATES, batch_sizes=[4], test_size=16,
                quick=True, progress=False)
ROWS = 1 + len(METHODS) * len(RATES)
REPOSITORY = Path(__file__).parents[1]
# A quick sweep's figures are noise by design; its warnings saying so are tested in test_noise_is_flagged.
pytestmark = pytest.mark.filterwarnings("ignore::retokviz.sweep.noise.NoiseWarning")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One quick sweep of the bundled baseline checkpoint: (its result, its CSV)."""
    out = tmp_path_factory.mktemp("sweep") / "sweep.csv"
    return sweep(out=out, **SETTINGS), out


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if a model is built (weights or timm) or anything is timed."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built or timed before the input was checked")

    monkeypatch.setattr(sweep_run, "build", refuse)
    monkeypatch.setattr(sweep_run, "time_interleaved", refuse)
    monkeypatch.setattr(timm, "create_model", refuse)
    monkeypatch.setattr(sweep_models, "load_checkpoint", refuse)


def by_key(rows):
    return {(row["method"], row["keep_rate"]): row for row in rows}


def test_every_column_in_every_row(swept):
    result, out = swept
    with open(out, newline="") as file:
        assert tuple(next(csv.reader(file))) == COLUMNS
    rows = read_table(out)
    assert rows == result.rows and len(rows) == ROWS == len(result.measured) and result.skipped == 0
    assert {(row["method"], row["keep_rate"]) for row in rows} == \
        {("none", 1.0)} | {(name, rate) for name in METHODS for rate in RATES}
    for row in rows:
        for column in ("accuracy", "images_per_s", "speedup", "latency_ms", "first_pass_s", "macs", "macs_ceiling",
                       "spread"):
            assert row[column] is not None and row[column] >= 0, column
        assert row["peak_memory_mb"] is None                   # on a CPU: documented as empty
        assert row["device"].startswith("cpu") and row["dtype"] == "fp32" and row["batch_size"] == 4
        assert row["img_size"] == 128 and row["compiled"] is False and row["attention"].startswith("sdpa:")
        assert (row["warmup"], row["runs"], row["rounds"]) == (1, 2, 2)              # quick
        assert row["torch"] == torch.__version__ and row["timm"] == timm.__version__
        assert row["data"] == "clutter test, 16 images, seed 0" and len(row["sweep_id"]) == 12
    assert by_key(rows)[("tome", 0.5)]["setting"].startswith("r=")
    assert by_key(rows)[("evit", 0.7)]["setting"] == "keep_rate=0.7"


def test_figures_are_consistent(swept):
    rows = by_key(swept[0].rows)
    base = rows[("none", 1.0)]
    assert base["speedup"] == 1.0 and base["macs_ceiling"] == 1.0 and base["note"] is None
    model = rv.load_checkpoint(CHECKPOINT)
    depth, patches = len(model.blocks), model.patch_embed.num_patches
    for name in METHODS:
        macs = [rows[(name, rate)]["macs"] for rate in RATES]
        assert macs == sorted(macs, reverse=True) and macs[-1] < macs[0] <= base["macs"], name
        for rate in RATES:
            row = rows[(name, rate)]
            assert row["macs_ceiling"] == pytest.approx(base["macs"] / row["macs"], rel=1e-5)
            assert row["speedup"] == pytest.approx(row["images_per_s"] / base["images_per_s"], rel=1e-4)
            counts = token_counts(rv.method_at(name, model, keep_rate=rate), depth, patches)
            assert [int(value) for value in row["tokens"].split()] == counts, (name, rate)
            assert row["note"] in (None, ABOVE_CEILING, WITHIN_SPREAD)
            assert (row["note"] == ABOVE_CEILING) == (row["speedup"] > row["macs_ceiling"])


def test_deit_small_costs_4_6_gmacs(deit_small):
    macs, tokens = macs_and_tokens(deit_small, None)
    assert macs == pytest.approx(4.6e9, rel=0.02)
    assert tokens == [196] * 12


class Interrupted(Exception):
    pass


def test_an_interrupted_sweep_continues(tmp_path, monkeypatch):
    out = tmp_path / "sweep.csv"
    written = []

    def stop_after_three(row):
        written.append(row)
        if len(written) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        sweep(out=out, on_row=stop_after_three, **SETTINGS)
    first = read_table(out)
    assert len(first) == 3
    again = sweep(out=out, **SETTINGS)
    keys = [(row["method"], row["keep_rate"]) for row in read_table(out)]
    assert len(keys) == len(set(keys)) == ROWS
    assert again.skipped == 3 and len(again.measured) == ROWS - 3
    assert {(row["method"], row["keep_rate"]) for row in again.measured}.isdisjoint(
        {(row["method"], row["keep_rate"]) for row in first})
    assert read_table(out)[:3] == first                      # the rows written before are kept as they were
    # complete: a third run builds and times nothing
    monkeypatch.setattr(sweep_run, "build", lambda *a, **k: pytest.fail("built a model for a complete table"))
    done = sweep(out=out, **SETTINGS)
    assert done.measured == [] and done.skipped == ROWS and len(done.rows) == ROWS


def test_a_line_cut_off_by_a_kill_is_measured_again(swept, tmp_path):
    out = tmp_path / "sweep.csv"
    lines = swept[1].read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:6]) + lines[6][:25])     # header, 5 rows, and part of the 6th
    result = sweep(out=out, **SETTINGS)
    assert len(result.measured) == ROWS - 5 and len(read_table(out)) == ROWS
    assert out.read_text().count("\n") == ROWS + 1


def test_another_sweeps_table_is_refused(swept, tmp_path, nothing_built):
    out = tmp_path / "sweep.csv"
    shutil.copy(swept[1], out)
    with pytest.raises(TableError, match=r"another sweep.*keep_rate 0\.5, 0\.7 there, not in this sweep"):
        sweep(out=out, **{**SETTINGS, "keep_rates": [1.0, 0.3]})
    with pytest.raises(TableError, match="rounds 2 there, 5 here"):
        sweep(out=out, **{**SETTINGS, "quick": False})
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(TableError, match="not a sweep table"):
        sweep(out=other, **SETTINGS)


@pytest.mark.parametrize("change, message", [
    ({"methods": ["evit", "nope"]}, r"unknown method 'nope'; the methods are evit, imagepiece, tome"),
    ({"keep_rates": []}, "keep_rates is empty; give at least one keep rate in \\(0, 1\\]"),
    ({"keep_rates": [0.7, 1.5]}, "keep rates must be numbers in \\(0, 1\\], got 1.5"),
    ({"batch_sizes": [4, 0]}, "batch size must be an int >= 1, got 0"),
    ({"dtypes": ["fp8"]}, "unknown dtype 'fp8'; the dtypes are fp32, bf16, fp16"),
    ({"rounds": 0}, "rounds must be an int >= 1, got 0"),
    ({"checkpoints": ["no-such-checkpoint"]}, "no checkpoint named 'no-such-checkpoint'.*small-baseline"),
    ({"checkpoints": [], "models": ["no_such_vit"]}, "timm has no model 'no_such_vit'"),
    ({"device": "cuda:99" if torch.cuda.is_available() else "cuda"}, "device 'cuda"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, nothing_built, change, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        sweep(out=tmp_path / "sweep.csv", **{**SETTINGS, **change})
    assert not (tmp_path / "sweep.csv").exists()


def test_an_unwritable_path_is_refused_before_any_work(tmp_path, nothing_built):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="can't be written: .*a-file is a file, not a folder"):
        sweep(out=blocker / "sweep.csv", **SETTINGS)
    with pytest.raises(ValueError, match="is a folder"):
        sweep(out=tmp_path, **SETTINGS)
    with pytest.raises(ValueError, match="out= is required"):
        sweep(checkpoints=[CHECKPOINT])


def test_a_model_that_cant_run_a_method_is_refused_without_its_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_run, "build", lambda *a, **k: pytest.fail("built a model"))
    with pytest.raises(rv.UnsupportedModelError, match="VisionTransformer"):
        sweep(out=tmp_path / "sweep.csv", models=["resnet18"], quick=True)


@pytest.mark.parametrize("argv, message", [
    (["--methods", "evit", "nope"], "unknown method 'nope'"),
    (["--batch", "0"], "batch size must be an int >= 1, got 0"),
    (["--keep"], "--keep: expected at least one argument"),
    (["--keep", "2"], r"keep rates must be numbers in \(0, 1\], got 2.0"),
])
def test_the_cli_exits_2_with_a_message(tmp_path, capsys, nothing_built, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["--checkpoint", CHECKPOINT, "--out", str(tmp_path / "sweep.csv"), *argv])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert re.search(message, error) and "Traceback" not in error


def test_the_cli_exits_2_without_a_traceback_and_plotting_stays_lazy(tmp_path):
    """`python -m retokviz.sweep` run as such (runpy), with the plots' module imported first; -X importtime lists
    every module imported: neither plotly nor ipywidgets nor pyplot may be among them."""
    argv = ["retokviz.sweep", "--checkpoint", CHECKPOINT, "--methods", "nope", "--out", str(tmp_path / "x.csv")]
    code = (f"import runpy, sys; sys.argv = {argv!r}; import retokviz.views.tradeoff; "
            "runpy.run_module('retokviz.sweep', run_name='__main__', alter_sys=True)")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          cwd=REPOSITORY, timeout=120)
    assert done.returncode == 2
    assert "unknown method 'nope'" in done.stderr and "Traceback" not in done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "retokviz.views.tradeoff" in imported and "retokviz.sweep.run" in imported
    assert not {"plotly", "ipywidgets", "matplotlib.pyplot"} & imported


def test_the_cli_contract_quick_with_a_plot(tmp_path, capsys):
    out, plot = tmp_path / "sweep.csv", tmp_path / "sweep.png"
    argv = ["--checkpoint", CHECKPOINT, "--methods", "evit", "tome", "--keep", "1.0", "0.5", "--batch", "4",
            "--test-size", "16", "--quick", "--no-progress", "--out", str(out), "--plot", str(plot)]
    result = main(argv)
    assert len(read_table(out)) == 5 and plot.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "5 row(s) measured, 0 already" in printed and "untouched" in printed
    main(argv)
    assert "0 row(s) measured, 5 already" in capsys.readouterr().out
    assert len(read_table(out)) == len(result.rows) == 5


def test_the_issue_contract_runs_as_written_with_the_small_baselines_former_name(tmp_path):
    """The command the sweep's contract names, in a separate process, exactly (but the output path): the
    checkpoint's former name `clutter-vit-baseline` still loads the small baseline it named."""
    out = tmp_path / "sweep.csv"
    command = [sys.executable, "-m", "retokviz.sweep", "--checkpoint", "clutter-vit-baseline", "--methods", "evit",
               "imagepiece", "tome", "--keep", "1.0", "0.7", "0.5", "--batch", "16", "--test-size", "200", "--quick",
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPOSITORY)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_table(out)
    assert len(rows) == 1 + 3 * 3 and {row["model"] for row in rows} == {"clutter-vit-baseline"}
    assert tuple(rows[0]) == COLUMNS and rows[0]["img_size"] == 128              # the small set's 8 x 8 grid
    with pytest.warns(DeprecationWarning, match="now named 'small-baseline'"):
        assert resolve_checkpoint("clutter-vit-baseline") == resolve_checkpoint("small-baseline")


def test_explicit_attention_and_bf16(tmp_path):
    result = sweep(out=tmp_path / "sweep.csv", **{**SETTINGS, "methods": ["evit"], "keep_rates": [0.5],
                                                  "batch_sizes": [1, 2], "dtypes": ["fp32", "bf16"],
                                                  "fused_attention": False})
    rows = result.rows
    assert len(rows) == 2 * 2 * 2
    assert {row["attention"] for row in rows} == {EXPLICIT}
    assert {row["dtype"] for row in rows} == {"fp32", "bf16"}
    for row in rows:                                   # batch 1: its throughput is its latency
        if row["batch_size"] == 1:
            assert row["images_per_s"] == pytest.approx(1000 / row["latency_ms"], rel=1e-4)


def test_fused_attention_is_switched_and_restored():
    model = tiny_vit()
    model.blocks[1].attn.fused_attn = False                 # a mixed model gets each setting back
    before = [block.attn.fused_attn for block in model.blocks]
    images = torch.randn(1, 3, 64, 64)
    with fused_attention(model, False):
        assert not any(block.attn.fused_attn for block in model.blocks)
        assert attention_kernel(model, images) == EXPLICIT
    assert [block.attn.fused_attn for block in model.blocks] == before
    with fused_attention(model, True):
        assert attention_kernel(model, images).startswith("sdpa:")
    with pytest.raises(RuntimeError), fused_attention(model, True):
        raise RuntimeError
    assert [block.attn.fused_attn for block in model.blocks] == before


def test_configurations_take_turns_in_alternating_order():
    calls = []

    class Runner:
        def __init__(self, name):
            self.name = name

        def __call__(self):
            from contextlib import nullcontext
            return nullcontext(lambda inputs: calls.append(self.name))

    timings = time_interleaved([Runner("a"), Runner("b")], torch.zeros(1), warmup=1, iters=2, rounds=3)
    assert calls == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3
    assert [len(timing.seconds) for timing in timings] == [3, 3]
    assert all(timing.peak_bytes is None and timing.spread >= 0 for timing in timings)


def test_the_first_pass_is_timed_apart_from_the_rounds():
    """A compiled model's first pass is its compilation: kept out of the rounds and reported (first_pass_s)."""
    import time
    from contextlib import nullcontext
    passes = []

    def forward(inputs):
        passes.append(None)
        time.sleep(0.2 if len(passes) == 1 else 0.0)

    (timing,) = time_interleaved([lambda: nullcontext(forward)], torch.zeros(1), warmup=0, iters=2, rounds=2)
    assert timing.first_seconds >= 0.2 and max(timing.seconds) < 0.1


def test_noise_is_flagged():
    assert note(speedup=1.3, ceiling=1.2, spread=0.01) == ABOVE_CEILING
    assert note(speedup=1.03, ceiling=1.5, spread=0.05) == WITHIN_SPREAD
    assert note(speedup=1.3, ceiling=1.5, spread=0.05) == ""
    row = dict(model="m", batch_size=4, dtype="fp32", keep_rate=0.5, note="", speedup=1.3, macs_ceiling=1.5)
    rows = [dict(row, method="evit", images_per_s=100.0, spread=0.05),
            dict(row, method="tome", images_per_s=103.0, spread=0.02),
            dict(row, method="imagepiece", images_per_s=150.0, spread=0.02, note=ABOVE_CEILING, speedup=1.6)]
    found = caveats(rows)
    assert len(found) == 2
    assert "above its MACs ceiling" in found[0] and "EViT and ToMe differ by 3.0%" in found[1]


def test_the_tradeoff_plots(swept, tmp_path):
    from retokviz.views.figure import Figure
    from retokviz.views.tradeoff import PAPER_LABEL, plot_tradeoff, tradeoff_figure, tradeoff_view

    rows, out = swept[0].rows, swept[1]
    figure = plot_tradeoff(out)
    assert isinstance(figure, Figure) and len(figure.axes) == 4
    speedup_labels = figure.axes[2].get_legend_handles_labels()[1]
    assert PAPER_LABEL in speedup_labels and "EViT" in speedup_labels
    assert PAPER_LABEL not in figure.axes[0].get_legend_handles_labels()[1]       # a clutter model: other scale
    figure.savefig(tmp_path / "tradeoff.png")
    ringed = plot_tradeoff(out, highlight=("evit", 0.45))         # the nearest keep rate the table holds: 0.5
    assert "EViT at keep 0.5" in ringed.axes[2].get_legend_handles_labels()[1]
    assert "EViT at keep 0.5" not in speedup_labels
    assert all(label.startswith("EViT at") is False for label in
               plot_tradeoff(out, highlight=("imagepiece+tome", 0.5)).axes[2].get_legend_handles_labels()[1])
    # a table at DeiT-S's scale gets the paper's points on the accuracy panels too
    deit = [dict(row, macs=round(row["macs"] * 4.6e9 / rows[0]["macs"])) for row in rows]
    assert PAPER_LABEL in plot_tradeoff(deit).axes[0].get_legend_handles_labels()[1]
    plotly_figure = tradeoff_figure(rows, methods=["evit"])
    names = {trace.name for trace in plotly_figure.data}
    assert {"EViT", "untouched", PAPER_LABEL} <= names and "ToMe" not in names
    view = tradeoff_view(out)
    assert view.batch_size.value == 4 and view.picture.value[:4] == b"\x89PNG"
    view.set(methods=["tome"])
    assert view.methods.value == ("tome",) and view.message.value == ""
    with pytest.raises(ValueError, match="the table has no batch_size 99; it has 4"):
        view.set(batch_size=99)
    with pytest.raises(ValueError, match="the table has no model 'x'"):
        plot_tradeoff(rows, model="x")


def test_a_sweep_config_is_a_checked_dataclass(tmp_path):
    config = SweepConfig(out=tmp_path / "s.csv", checkpoints=CHECKPOINT, methods="EViT", keep_rates=0.5,
                         batch_sizes=8, quick=True)
    assert (config.checkpoints, config.methods, config.keep_rates, config.batch_sizes) == \
        ((CHECKPOINT,), ("evit",), (0.5,), (8,))
    assert (config.warmup, config.iters, config.rounds, config.test_size_for("checkpoint")) == (1, 2, 2, 64)
    with pytest.raises(ValueError, match="nothing to sweep"):
        SweepConfig(out=tmp_path / "s.csv")
    with pytest.raises(ValueError, match="given more than once"):
        SweepConfig(out=tmp_path / "s.csv", checkpoints=CHECKPOINT, keep_rates=[0.5, 0.5])


def test_a_timm_models_accuracy_comes_from_an_image_folder(tmp_path):
    from PIL import Image

    from retokviz.sweep.accuracy import test_set, top1
    from retokviz.sweep.models import TIMM, Source

    for index in range(5):
        folder = tmp_path / "images" / "val" / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 40), (40 * index, 90, 200)).save(folder / f"{index}.png")
    config = SweepConfig(out=tmp_path / "s.csv", models="deit_small_patch16_224", data=tmp_path / "images",
                         pretrained=True, test_size=3)
    data = test_set(Source("deit_small_patch16_224", TIMM), config, img_size=64)
    assert data.description == f"{tmp_path / 'images'}/val, 3 images, seed 0"
    accuracy = top1(tiny_vit(), data, torch.device("cpu"), torch.float32)
    assert accuracy in (0, 1 / 3, 2 / 3, 1)
    without_data = SweepConfig(out=tmp_path / "s.csv", models="deit_small_patch16_224")
    assert test_set(Source("deit_small_patch16_224", TIMM), without_data, img_size=64) is None
    with pytest.raises(ValueError, match="random weights: add pretrained=True"):
        SweepConfig(out=tmp_path / "s.csv", models="deit_small_patch16_224", data=tmp_path / "images")
    with pytest.raises(ValueError, match="must be an image folder with a val/ split"):
        SweepConfig(out=tmp_path / "s.csv", checkpoints=CHECKPOINT, data=tmp_path)


def test_the_markdown_table_quotes_every_row_with_its_conditions(swept):
    rows = swept[0].rows
    table = format_markdown(rows).splitlines()
    assert table[0].startswith(f"Conditions: {rows[0]['device']}, torch {rows[0]['torch']}") and "batch 4, fp32" in table[0]
    body = table[4:]
    assert len(body) == len(rows) and body[0].startswith("| untouched | 64 |")
    for line, row in zip(body, rows):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[2] == f"{row['accuracy']:.1%}" and cells[3] == f"{row['macs'] / 1e9:.3f}"
        assert cells[5] == f"{row['speedup']:.2f}x" and cells[6] == f"{row['macs_ceiling']:.2f}x"
        assert cells[1].split("/")[-1] == row["tokens"].split()[-1]          # the last block's count
    evit = next(line for line in body if line.startswith("| EViT 0.5 |"))
    assert evit.split("|")[2].strip().count("/") == 3                       # 64 and three reductions
    assert "compiling" not in table[2]                                      # eager rows: no compile column
    compiled = format_markdown([dict(row, compiled=True) for row in rows]).splitlines()
    assert compiled[2].endswith("| first pass (compiling) |")
    assert compiled[4].endswith(f"| {rows[0]['first_pass_s']:.1f} s |")


def test_a_learned_method_is_swept_only_on_its_own_checkpoint_with_its_trained_modules(tmp_path):
    from retokviz.models.checkpoints import export_checkpoint

    model = rv.load_checkpoint(CHECKPOINT)
    rv.apply(model, rv.DynamicViT(keep_rate=0.7))
    with torch.no_grad():                                     # predictors unlike fresh ones: "trained"
        for parameter in model.retokviz_modules.parameters():
            parameter.add_(0.05)
    path = tmp_path / "dv.safetensors"
    export_checkpoint(model.eval(), path,
                             recipe={"command": "test", "seed": 0, "device": "cpu", "seconds": 0.0,
                                     "test_acc": 0.5})
    source = sweep_models.Source(str(path), sweep_models.CHECKPOINT)
    settings = {key: value for key, value in SETTINGS.items() if key != "progress"}
    built = sweep_models.build(source, SweepConfig(out=tmp_path / "x.csv",
                                                   **{**settings, "checkpoints": [str(path)]}))
    assert rv.method_of(built) == rv.DynamicViT(keep_rate=0.7)          # kept, with the file's predictors
    for ours, saved in zip(built.retokviz_modules.parameters(), model.retokviz_modules.parameters()):
        assert torch.equal(ours, saved)

    result = sweep(out=tmp_path / "sweep.csv", **{**SETTINGS, "checkpoints": [CHECKPOINT, str(path)],
                                                   "methods": ("evit", "dynamicvit"), "keep_rates": (0.7,)})
    rows = {(row["model"], row["method"]): row for row in result.rows}
    assert set(rows) == {(CHECKPOINT, "none"), (CHECKPOINT, "evit"), (str(path), "none"), (str(path), "evit"),
                         (str(path), "dynamicvit")}                   # not on the baseline: untrained there
    assert rows[(str(path), "none")]["macs"] == rows[(CHECKPOINT, "none")]["macs"]   # untouched: no predictors
    expected = token_counts(rv.DynamicViT(keep_rate=0.7), 4, 64)
    assert rows[(str(path), "dynamicvit")]["tokens"] == " ".join(map(str, expected))
    with pytest.raises(ValueError, match="dynamicvit is a learned method: the sweep measures it only on a "
                                         "checkpoint trained with it"):
        sweep(out=tmp_path / "other.csv", **{**SETTINGS, "methods": ("evit", "dynamicvit")})


def test_a_compiled_sweep_compiles_every_configuration_for_inference(tmp_path, monkeypatch):
    """--compile times what `rv.compile_for_inference` gives (weights frozen, graph driven from C++), one compiled
    copy per configuration, the untouched model's too; here the compiler is replaced by a spy (compiling is tested
    in test_compile.py), so the rows are eager passes marked compiled."""
    compiled = []

    def spy(model):
        assert not model.training
        compiled.append(rv.method_of(model))
        return model

    monkeypatch.setattr(sweep_run, "compile_for_inference", spy)
    result = sweep(out=tmp_path / "compiled.csv", **dict(SETTINGS, methods=("evit", "tome"), keep_rates=(0.5,),
                                                        compile=True))
    rows = read_table(tmp_path / "compiled.csv")
    assert len(compiled) == len(rows) == 3 and compiled[0] is None
    assert sorted(type(method).__name__ for method in compiled[1:]) == ["EViT", "ToMe"]
    assert all(row["compiled"] is True for row in rows) and result is not None
