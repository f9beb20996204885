"""Training: the two schedules, learning, resume after a kill, atomic checkpoints, the log, DDP, the CLI, bad input.

Everything runs on tiny timm ViTs (2 blocks, width 48, 32 px images of 16 patches) and 64-image data sets.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
import timm
import torch
from torch.utils.data import Dataset, TensorDataset

import retokviz as rv
from retokviz.models.checkpoints import checkpoints, export_checkpoint, load_checkpoint
from retokviz.training.cli import main
from retokviz.training.loop import TrainConfig, keep_rate_at, lr_at, resolve_device, train

NUM_CLASSES = 4
VOLATILE = ("images_per_second", "seconds")      # timings: the only fields allowed to differ between two runs


def tiny_model(seed: int = 0, **overrides) -> torch.nn.Module:
    """A 2-block ViT of width 48 on 32 x 32 images in 8 px patches, with timm's own initialisation."""
    torch.manual_seed(seed)
    kwargs = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=NUM_CLASSES)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**kwargs, **overrides})


def tiny_data(n: int, seed: int) -> TensorDataset:
    """A learnable problem: noise images whose red and green channels are shifted up or down by the class's bits."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % NUM_CLASSES
    shifts = torch.stack([labels % 2, labels // 2], dim=1).float() * 0.2 - 0.1    # [n, 2]: +-0.1
    images = torch.randn(n, 3, 32, 32, generator=generator)
    images[:, :2] += shifts[:, :, None, None]
    return TensorDataset(images, labels)


def tiny_config(out_dir: Path | None = None, **overrides) -> TrainConfig:
    kwargs = dict(epochs=3, batch_size=16, lr=2e-3, warmup_epochs=1, keep_warmup_epochs=1, keep_decay_epochs=1,
                  label_smoothing=0.0, device="cpu", progress=False, out_dir=out_dir)
    return TrainConfig(**{**kwargs, **overrides})


def stable(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in record.items() if key not in VOLATILE} for record in history]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


# ------------------------------------------------------------------------------------------------- schedules

def test_keep_rate_schedule_warmup_cosine_then_target():
    def at(step, warmup=2, decay=4):
        return keep_rate_at(step, steps_per_epoch=10, target=0.5, warmup_epochs=warmup, decay_epochs=decay)

    assert at(0) == at(19) == 1.0                                  # warm-up: 2 epochs of 10 iterations
    assert at(20) == 1.0                                           # the cosine starts at 1.0
    assert at(30) == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi / 4)), abs=1e-15)
    assert at(40) == pytest.approx(0.75, abs=1e-15)                # half-way through the decay
    assert at(59) == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi * 39 / 40)), abs=1e-15)
    assert at(60) == at(10_000) == 0.5                             # then the target, exactly
    assert at(0, warmup=0, decay=0) == 0.5                         # fine-tuning: the target from step 0
    values = [at(step) for step in range(80)]
    assert all(later <= earlier for earlier, later in zip(values, values[1:]))


def test_lr_schedule_linear_warmup_then_cosine():
    def at(step, warmup=10):
        return lr_at(step, total_steps=100, warmup_steps=warmup, peak_lr=1e-3, final_lr=1e-5)

    assert at(0) == pytest.approx(1e-4) and at(4) == pytest.approx(5e-4) and at(9) == pytest.approx(1e-3)
    assert at(10) == pytest.approx(1e-3)                            # the cosine starts at the peak
    assert at(55) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)        # half-way through the cosine
    assert at(99) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert at(0, warmup=0) == pytest.approx(1e-3)
    assert TrainConfig(batch_size=128).peak_lr == pytest.approx(1.25e-4)      # DeiT: 5e-4 x 128 / 512
    assert TrainConfig(batch_size=128).final_lr == pytest.approx(1.25e-4 / 50)


# ---------------------------------------------------------------------------------------------- training

def test_loss_goes_down_on_a_learnable_problem():
    model = tiny_model()
    result = train(model, tiny_data(64, 0), tiny_data(32, 1), tiny_config(epochs=8, warmup_epochs=1))
    losses = [record["train_loss"] for record in result.history]
    assert losses[-1] < 0.6 * losses[0], losses
    first, last = result.history[0]["test_acc"], result.metrics["test_acc"]
    assert last >= 0.75 and last > first, result.history            # chance is 0.25
    assert result.checkpoint is None and not model.training


def test_metrics_log_one_record_per_epoch_with_the_schedules(tmp_path):
    method = rv.EViT(keep_rate=0.5)
    model = tiny_model()
    config = tiny_config(tmp_path, epochs=3, lr=1e-3, min_lr=1e-4)
    result = train(model, tiny_data(64, 0), tiny_data(32, 1), config, method)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records == result.history and len(records) == 3
    fields = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "keep_rate", "lr", "images_per_second",
              "seconds"}
    assert all(set(record) == fields for record in records)
    assert [record["epoch"] for record in records] == [1, 2, 3]
    # 4 iterations an epoch: the keep rate and lr of each epoch's last iteration, 3, 7 and 11
    assert [record["keep_rate"] for record in records] == [1.0, keep_rate_at(7, 4, 0.5, 1, 1), 0.5]
    assert [record["lr"] for record in records] == [lr_at(step, 12, 4, 1e-3, 1e-4) for step in (3, 7, 11)]
    assert all(0 <= record["test_acc"] <= 1 and record["images_per_second"] > 0 for record in records)
    assert rv.method_of(model) == method                           # left at the method's own keep rate
    assert result.checkpoint == tmp_path / "last.pt"


def test_a_composition_trains_with_every_keep_rate_scheduled_and_exports(tmp_path):
    model = tiny_model()
    composed = [rv.ImagePiece(keep_rate=0.5), rv.ToMe(r=1)]
    config = tiny_config(epochs=2, keep_warmup_epochs=0, keep_decay_epochs=1)
    result = train(model, tiny_data(64, 0), tiny_data(16, 1), config, composed)
    assert [record["keep_rate"] for record in result.history] == [keep_rate_at(3, 4, 0.5, 0, 1), 0.5]
    # as rv.apply composes it: ToMe protects the share of tokens ImagePiece keeps
    assert rv.method_of(model) == (rv.ImagePiece(keep_rate=0.5), rv.ToMe(r=1, protect=0.5))
    export_checkpoint(model, tmp_path / "composed.safetensors", recipe={"test_acc": result.metrics["test_acc"]})
    loaded = load_checkpoint(tmp_path / "composed.safetensors")
    assert rv.method_of(loaded) == rv.method_of(model)
    images = tiny_data(4, 2).tensors[0]
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


class Killed(Exception):
    """Stands for the process being killed."""


class KilledAfter(Dataset):
    """`dataset`, until `fetches` images have been read; then the process 'dies'."""

    def __init__(self, dataset: Dataset, fetches: int) -> None:
        self.dataset, self.left = dataset, fetches

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        self.left -= 1
        if self.left < 0:
            raise Killed
        return self.dataset[index]


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    # mixup/cutmix draw from numpy's RNG and drop path from torch's: the restored states must both be right
    method = rv.EViT(keep_rate=0.5)
    config = tiny_config(epochs=3, mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    data, test = tiny_data(64, 0), tiny_data(32, 1)
    whole = tiny_model(drop_path_rate=0.1)
    uninterrupted = train(whole, data, test, config, method)

    out = tmp_path / "run"
    interrupted = dataclasses.replace(config, out_dir=out)
    with pytest.raises(Killed):                                     # killed 20 images into epoch 3
        train(tiny_model(drop_path_rate=0.1), KilledAfter(data, 2 * 64 + 20), test, interrupted, method)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2

    resumed_model = tiny_model(seed=1, drop_path_rate=0.1)          # other initial weights: the checkpoint's win
    resumed = train(resumed_model, data, test, interrupted, method, resume=True)
    assert_same_weights(resumed_model, whole)
    assert stable(resumed.history) == stable(uninterrupted.history)

    with pytest.raises(FileExistsError, match="resume=True"):
        train(tiny_model(), data, test, interrupted, method)
    with pytest.raises(ValueError, match=r"different run; resuming would change lr: 0.002 -> 0.001"):
        train(tiny_model(), data, test, tiny_config(out, epochs=3, lr=1e-3), method, resume=True)
    with pytest.raises(ValueError, match=r"last.pt holds the weights of another architecture than this model"):
        train(tiny_model(depth=3), data, test, interrupted, method, resume=True)


def test_resume_without_a_run_to_resume_is_refused(tmp_path):
    data = KilledAfter(tiny_data(32, 0), 0)                        # reading one image would be training
    with pytest.raises(FileNotFoundError, match=rf"there is no {tmp_path / 'last.pt'} to resume from"):
        train(tiny_model(), data, tiny_data(16, 1), tiny_config(tmp_path), resume=True)


def test_resume_from_a_corrupt_state_names_the_file_and_what_to_do(tmp_path):
    data, test = tiny_data(32, 0), tiny_data(16, 1)
    train(tiny_model(), data, test, tiny_config(tmp_path, epochs=2))
    last = tmp_path / "last.pt"
    whole = last.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"", b"not a checkpoint at all"):
        last.write_bytes(damaged)
        with pytest.raises(ValueError, match=rf"{last} is corrupt or truncated .* delete it and .*metrics.jsonl"):
            train(tiny_model(), KilledAfter(data, 0), test, tiny_config(tmp_path, epochs=2), resume=True)


def test_an_out_dir_that_cannot_be_written_is_refused_before_training(tmp_path):
    (tmp_path / "a_file").write_text("")
    config = tiny_config(tmp_path / "a_file" / "run")
    with pytest.raises(NotADirectoryError, match=r"out_dir .*a_file/run: .*a_file is a file, not a folder"):
        train(tiny_model(), KilledAfter(tiny_data(32, 0), 0), tiny_data(16, 1), config)


def test_cuda_without_a_gpu_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda': this torch .* finds no CUDA GPU on this machine"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="finds no CUDA GPU"):
        train(tiny_model(), KilledAfter(tiny_data(32, 0), 0), tiny_data(16, 1), tiny_config(device="cuda:0"))


def test_a_checkpoint_killed_while_written_leaves_the_previous_one(tmp_path, monkeypatch):
    real_save = torch.save
    saves = []

    def save_then_die_on_the_second(obj, file):
        saves.append(obj["epoch"])
        if len(saves) == 2:
            file.write(b"the first bytes of a checkpoint")
            raise Killed
        real_save(obj, file)

    monkeypatch.setattr(torch, "save", save_then_die_on_the_second)
    with pytest.raises(Killed):
        train(tiny_model(), tiny_data(32, 0), tiny_data(16, 1), tiny_config(tmp_path, epochs=2))
    assert saves == [1, 2]
    state = torch.load(tmp_path / "last.pt", weights_only=True)     # whole, and still epoch 1's
    assert state["epoch"] == 1 and set(state["model"]) == set(tiny_model().state_dict())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.pt", "metrics.jsonl"]   # no temp file left


# ----------------------------------------------------------------------------------------------- DDP

DDP_SCRIPT = """
import os, sys
import torch
sys.path.insert(0, {tests!r})
import retokviz as rv
from retokviz.training.loop import train
from test_train import tiny_config, tiny_data, tiny_model

out = sys.argv[1]
model = tiny_model(qkv_bias=False)
train(model, tiny_data(64, 0), tiny_data(30, 1), tiny_config(out, epochs=2), rv.EViT(keep_rate=0.5))
torch.save(model.state_dict(), os.path.join(out, f"rank{{os.environ['RANK']}}.pt"))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_ranks_train_like_one_process_on_the_same_global_batch(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    out = tmp_path / "ddp"
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), str(out)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]

    rank0, rank1 = (torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    assert all(torch.equal(rank0[key], rank1[key]) for key in rank0)   # DDP: one all-reduced gradient for both
    assert len(torch.load(out / "last.pt", weights_only=True)["rng"]) == 2
    assert sorted(path.name for path in out.iterdir()) == ["last.pt", "metrics.jsonl", "rank0.pt", "rank1.pt"]

    single = tiny_model(qkv_bias=False)
    result = train(single, tiny_data(64, 0), tiny_data(30, 1), tiny_config(epochs=2), rv.EViT(keep_rate=0.5))
    # Not bit-exact: two ranks average two half-batch gradients (all-reduce), one process averages one batch,
    # so float sums are taken in another order. Adam divides each step by the gradient's running RMS, which
    # magnifies that round-off where a gradient is tiny: measured up to ~1e-6 after these 8 steps, hence 1e-5.
    # The models have no qkv bias: the key bias's gradient is 0 in exact arithmetic (softmax ignores a shift
    # shared by all keys), pure round-off, which Adam would turn into lr-sized steps of random sign.
    for key, value in single.state_dict().items():
        torch.testing.assert_close(rank0[key], value, rtol=0, atol=1e-5, msg=key)
    distributed = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for ddp_record, record in zip(distributed, result.history, strict=True):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "keep_rate", "lr"):
            assert ddp_record[key] == pytest.approx(record[key], abs=1e-6), key


# ----------------------------------------------------------------------------------------------- the CLI

class FakeClutter(TensorDataset):
    """Stands in for rv.data.ClutterDataset(n, seed, split, image_size) in the CLI tests; `made` lists the
    (n, seed, split) of every one made, to tell whether a command line got as far as making its data."""

    classes = [str(c) for c in range(NUM_CLASSES)]
    made: list[tuple[int, int, str]] = []

    def __init__(self, n: int, seed: int, split: str, image_size: int) -> None:
        FakeClutter.made.append((n, seed, split))
        data = tiny_data(n, seed + (split == "test"))
        super().__init__(*data.tensors)


@contextlib.contextmanager
def faked_clutter():
    with pytest.MonkeyPatch.context() as patch:
        fake = types.SimpleNamespace(ClutterDataset=FakeClutter)
        patch.setitem(sys.modules, "retokviz.data.clutter", fake)
        patch.setattr(rv, "data", fake, raising=False)             # in case the real one was imported already
        FakeClutter.made.clear()
        yield


@pytest.fixture
def fake_clutter():
    with faked_clutter():
        yield


# A tiny model on the fake clutter, on the CPU.
TINY_MODEL = ["--img-size", "32", "--embed-dim", "48", "--depth", "2", "--num-heads", "3", "--batch-size", "16",
              "--device", "cpu"]
TINY_DATA = ["--train-size", "32", "--test-size", "16"]
TINY_RUN = [*TINY_MODEL, *TINY_DATA, "--method", "evit", "--keep-rate", "0.5", "--epochs", "2", "--warmup-epochs",
            "0", "--keep-warmup-epochs", "0", "--keep-decay-epochs", "1"]


def refused(argv: list[str], capsys) -> str:
    """The message of a command line that exits with a usage error, checked to have made no data."""
    with pytest.raises(SystemExit):
        main(argv)
    assert FakeClutter.made == []                                   # refused before making the data
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A command line run of 2 epochs that exports `tiny` into its folder, replacing a file there (--force)."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "tiny.safetensors").write_bytes(b"an older checkpoint")
    argv = [*TINY_RUN, "--out", str(folder / "run"), "--export", "tiny", "--export-dir", str(folder), "--force"]
    printed = io.StringIO()
    with faked_clutter(), contextlib.redirect_stdout(printed):
        result = main(argv)
    return types.SimpleNamespace(folder=folder, argv=argv, result=result, printed=printed.getvalue())


def test_cli_trains_logs_and_exports_a_loadable_checkpoint(finished_run):
    folder, printed, result = finished_run.folder, finished_run.printed, finished_run.result
    for condition in ("model:", "data:", "method:", "batch:", "lr:", "keep schedule:", "device:", "seed:"):
        assert condition in printed
    assert "'keep_rate': 0.5" in printed and "epoch 2/2" in printed and "exported" in printed
    assert f"{folder / 'tiny.safetensors'} (replacing it)" in printed
    assert len((folder / "run" / "metrics.jsonl").read_text().splitlines()) == 2

    [info] = checkpoints(folder)
    assert info.name == "tiny" and info.accuracy == result.metrics["test_acc"]
    assert info.recipe["command"].startswith("python -m retokviz.training --img-size 32")
    loaded = load_checkpoint("tiny", directory=folder)
    assert rv.method_of(loaded) == rv.EViT(keep_rate=0.5)
    state = torch.load(folder / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in state.items())


def test_cli_resume_refuses_other_data_or_model_options_naming_each(finished_run, fake_clutter, capsys):
    last = finished_run.folder / "run" / "last.pt"
    before = last.read_bytes()
    message = refused([*finished_run.argv, "--resume", "--data-seed", "1", "--depth", "3", "--train-size", "48"],
                      capsys)
    assert f"{last} is from a different run; resuming would change" in message
    for change in ("depth: 2 -> 3", "train_size: 32 -> 48", "data_seed: 0 -> 1"):
        assert change in message
    assert last.read_bytes() == before
    # the same options resume: the run is complete, so nothing is trained
    assert main([*finished_run.argv, "--resume"]).history == finished_run.result.history


def test_cli_resume_from_a_corrupt_last_pt_names_the_file(finished_run, tmp_path, fake_clutter, capsys):
    shutil.copytree(finished_run.folder / "run", tmp_path / "run")
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    message = refused([*TINY_RUN, "--out", str(tmp_path / "run"), "--resume"], capsys)
    assert f"{last} is corrupt or truncated" in message and "delete it" in message


def test_cli_resume_without_a_run_is_refused(tmp_path, fake_clutter, capsys):
    message = refused([*TINY_RUN, "--out", str(tmp_path / "new"), "--resume"], capsys)
    assert f"there is no {tmp_path / 'new' / 'last.pt'} to resume from" in message
    assert not (tmp_path / "new").exists()


def test_cli_refuses_to_replace_a_checkpoint_without_force(finished_run, tmp_path, fake_clutter, capsys):
    exported = finished_run.folder / "tiny.safetensors"
    before = exported.read_bytes()
    message = refused([*TINY_RUN, "--out", str(tmp_path / "run"), "--export", "tiny", "--export-dir",
                       str(finished_run.folder)], capsys)
    assert f"--export tiny: {exported} exists already; pass --force to replace it" in message
    assert exported.read_bytes() == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("option", ["--out", "--export-dir"])
def test_cli_checks_the_output_folders_before_anything_else(option, tmp_path, fake_clutter, capsys):
    (tmp_path / "a_file").write_text("")
    folders = {"--out": str(tmp_path / "run"), "--export-dir": str(tmp_path)}
    folders[option] = str(tmp_path / "a_file" / "folder")
    message = refused([*TINY_RUN, "--out", folders["--out"], "--export", "tiny", "--export-dir",
                       folders["--export-dir"]], capsys)
    assert f"{option} {tmp_path / 'a_file' / 'folder'}: {tmp_path / 'a_file'} is a file, not a folder" in message


def test_cli_refuses_cuda_without_a_gpu_at_the_start(monkeypatch, tmp_path, fake_clutter, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = refused([*TINY_RUN, "--out", str(tmp_path / "run"), "--device", "cuda"], capsys)
    assert "device 'cuda': this torch" in message and "finds no CUDA GPU" in message


def test_cli_refuses_fewer_classes_than_the_data_has(tmp_path, fake_clutter, capsys):
    message = refused([*TINY_RUN, "--out", str(tmp_path / "run"), "--num-classes", "2"], capsys)
    assert "--num-classes 2 is below the 4 classes of the generated clutter data" in message


@pytest.mark.parametrize("short", [["--epochs", "1", *TINY_DATA], ["--quick"]], ids=["epochs-1", "quick"])
def test_a_short_run_fits_the_default_schedules_to_its_epochs(short, tmp_path, fake_clutter, capsys):
    result = main([*TINY_MODEL, "--method", "evit", "--keep-rate", "0.5", "--out", str(tmp_path / "run"), *short])
    printed = capsys.readouterr().out
    assert len(result.history) == 1 and result.history[0]["epoch"] == 1
    assert "shortened: to fit 1 epochs: --warmup-epochs 0 (default 2), --keep-warmup-epochs 0 (default 1), " \
           "--keep-decay-epochs 1 (default 10)" in printed
    sizes = (32, 16) if short[0] == "--epochs" else (512, 256)
    assert FakeClutter.made == [(sizes[0], 0, "train"), (sizes[1], 0, "test")]


def test_cli_refuses_to_train_a_model_too_big_to_export(tmp_path, fake_clutter, capsys):
    message = refused(["--img-size", "32", "--depth", "12", "--train-size", "8", "--test-size", "8", "--export",
                       "big", "--export-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cpu"],
                      capsys)
    assert "over the 12,000,000 bytes a bundled checkpoint may have" in message
    assert list(tmp_path.iterdir()) == []                           # refused before training


def test_importing_the_command_line_keeps_rv_train_the_function():
    script = ("import retokviz as rv, retokviz.training.cli, retokviz.training.loop\n"
              "from retokviz.training import cli\n"
              "import retokviz.training as training\n"
              "assert rv.train is retokviz.training.loop.train is training.train, rv.train\n"
              "assert rv.training is training and callable(cli.main)\n")
    run = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


# ----------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "TrainConfig.epochs must be an int >= 1, got 0"),
    ("batch_size", 2.5, "TrainConfig.batch_size must be an int >= 1, got 2.5"),
    ("lr", -1e-3, "TrainConfig.lr must be None or a number > 0, got -0.001"),
    ("warmup_epochs", 30, "TrainConfig.warmup_epochs must be an int in [0, epochs=30), got 30"),
    ("label_smoothing", 1.0, "TrainConfig.label_smoothing must be a number in [0, 1), got 1.0"),
    ("mixup", float("nan"), "TrainConfig.mixup must be a number >= 0, got nan"),
    ("seed", -1, "TrainConfig.seed must be an int in [0, 2**31), got -1"),
    ("device", "tpu", "TrainConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
])
def test_config_names_the_bad_value_and_the_range(field, value, message):
    with pytest.raises(ValueError) as error:
        TrainConfig(**{field: value})
    assert str(error.value) == message


def test_train_refuses_what_does_not_fit():
    data = tiny_data(16, 0)
    with pytest.raises(ValueError, match=r"keep_warmup_epochs=1 \+ keep_decay_epochs=10 = 11, must fit in "
                                         r"epochs=5 .* the method's own keep rate 0.7"):
        train(tiny_model(), data, data, TrainConfig(epochs=5, device="cpu"), rv.EViT(keep_rate=0.7))
    with pytest.raises(ValueError, match=r"training set \(16 images\) is smaller than one batch \(32\)"):
        train(tiny_model(), data, data, tiny_config(batch_size=32))
    with pytest.raises(ValueError, match="batch per rank, 15, must be even"):
        train(tiny_model(), data, data, tiny_config(batch_size=15, mixup=0.8))


@pytest.mark.parametrize("argv, message", [
    (["--method", "evit", "--keep-rate", "1.5"], "EViT.keep_rate must be in (0, 1], got 1.5"),
    (["--method", "evit", "--keep-rate", "0"], "EViT.keep_rate must be in (0, 1], got 0.0"),
    (["--keep-rate", "0.5"], "--keep-rate does not apply to --method none"),
    (["--method", "evit", "--r", "4"], "--r does not apply to --method evit"),
    (["--epochs", "0"], "TrainConfig.epochs must be an int >= 1, got 0"),
    (["--method", "evit", "--epochs", "5", "--keep-decay-epochs", "10"], "= 11, must fit in epochs=5"),
    (["--warmup-epochs", "1", "--epochs", "1"], "TrainConfig.warmup_epochs must be an int in [0, epochs=1), got 1"),
    (["--depth", "0"], "--depth must be >= 1, got 0"),
    (["--export", "data/x.safetensors"], "--export takes a file name without folder or suffix"),
    (["--method", "evvit"], "invalid choice: 'evvit'"),
    (["--data-seed", "-1"], "--data-seed must be >= 0, got -1"),
    (["--auto-augment", "rand-m9-mstd0.5-inc1"], "--auto-augment applies to image folders"),
])
def test_cli_refuses_bad_arguments_before_doing_anything(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_the_command_line_entry_point_runs_without_warnings():
    run = subprocess.run([sys.executable, "-W", "error", "-m", "retokviz.training", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "python -m retokviz.training" in run.stdout and "--keep-rate" in run.stdout and run.stderr == ""


def test_cli_init_starts_from_a_checkpoint_and_records_it(finished_run, tmp_path, fake_clutter, monkeypatch):
    """--init: the model handed to training holds the checkpoint's weights, and a resume must give the same --init."""
    started = {}

    def capture(model, *args, settings=None, **kwargs):
        started.update(weights={key: value.clone() for key, value in model.state_dict().items()}, settings=settings)
        return "trained"

    monkeypatch.setattr(sys.modules["retokviz.training.cli"], "train", capture)
    checkpoint = finished_run.folder / "tiny.safetensors"
    assert main([*TINY_RUN, "--out", str(tmp_path / "run"), "--init", str(checkpoint)]) == "trained"
    stored = load_checkpoint(checkpoint).state_dict()
    assert stored.keys() == started["weights"].keys()
    assert all(torch.equal(stored[key], value) for key, value in started["weights"].items())
    assert started["settings"]["init"] == str(checkpoint)


@pytest.mark.parametrize("init, message", [
    ("no-such-checkpoint", r"no checkpoint named .no-such-checkpoint. in .*; available: "),
    ("WRONG_SHAPE", r"--init .*tiny.safetensors: its weights don't fit the model the options describe"),
])
def test_cli_refuses_an_init_that_is_missing_or_does_not_fit_before_making_data(init, message, finished_run,
                                                                                tmp_path, fake_clutter, capsys):
    argv = [*TINY_RUN, "--out", str(tmp_path / "run")]
    if init == "WRONG_SHAPE":
        argv += ["--depth", "3", "--init", str(finished_run.folder / "tiny.safetensors")]
    else:
        argv += ["--init", init]
    assert re.search(message, refused(argv, capsys))


@pytest.mark.parametrize("method", [rv.EViT(keep_rate=0.5), rv.ImagePiece(keep_rate=0.5), rv.ToMe(r=2),
                                    [rv.ImagePiece(keep_rate=0.7), rv.ToMe(r=1)]], ids=repr)
def test_the_cuda_bf16_autocast_branch_trains_each_method_on_the_cpu(monkeypatch, method):
    # On CUDA the steps run under bf16 autocast; torch runs that branch on a CPU too, so force it here: the reduction
    # code then sees bf16 activations beside float32 scores, sizes and weights, as it would on a GPU.
    import retokviz.training.loop as training

    start = training._start_run
    monkeypatch.setattr(training, "_start_run", lambda *args: dataclasses.replace(start(*args), amp=True))
    model = tiny_model(depth=4)
    dtypes: set[torch.dtype] = set()
    model.head.register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, tiny_data(64, 0), tiny_data(32, 1), tiny_config(epochs=2), method=method)
    assert dtypes == {torch.bfloat16}                                  # training and evaluation ran under autocast
    assert all(math.isfinite(record["train_loss"]) and math.isfinite(record["test_loss"])
               for record in result.history)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sum(not torch.equal(p, q) for p, q in zip(model.parameters(), before)) == len(before)   # all trained
