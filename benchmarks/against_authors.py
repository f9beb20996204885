"""retokviz's EViT and ToMe against the authors' own code: the same model, weights and inputs, timed in one run.

    python benchmarks/against_authors.py --evit-code /path/to/evit --tome-code /path/to/ToMe \\
        [--models deit_small showcase] [--batches 1 16] [--rounds 5] [--json out.json]

The authors' code is never part of retokviz: it is imported at run time from the folders given, a checkout of
github.com/youweiliang/evit (Apache-2.0: evit.py and helpers.py at its top) and one of
github.com/facebookresearch/ToMe (CC BY-NC 4.0: the package tome/ at its top). Either may be left out; that
method's "authors'" row is then skipped, and said so.

For each model the script first checks that each pair computes the same thing: retokviz's EViT(keep_rate) on the timm
model against the authors' EViT class holding the same weights (keep rate at the same blocks, their fused token),
and retokviz's ToMe(r) against the authors' `tome.patch.timm` on a copy of the timm model with the same r, r chosen
(`rv.method_at`) so that ToMe ends with EViT's token budget. The logits of a batch of random images must agree to
`--tolerance` (max |difference| over max |logit|); a pair that disagrees is not timed, since a speed comparison of
two different computations says nothing. Then the untouched model and every pair are timed together, taking turns
in every round (`retokviz.sweep.timing.time_interleaved`: inference mode, fp32, one untimed pass each, `--warmup`
untimed and `--iters` timed passes per turn, the order reversed every other round), and each keeps its median round.

Models: "deit_small" is timm's deit_small_patch16_224 with random weights (speed does not depend on them; no
pretrained weights are needed offline). "showcase" is the bundled showcase architecture (vit_tiny_patch16_224 with
embed_dim 96, depth 6, 3 heads, 192 px) with showcase-baseline's transformer weights but timm's plain 16 x 16 patchify
in place of its coherence stem, which the authors' classes don't have: every row of it, the untouched one included,
runs without the stem. "tiny" (4 blocks of width 48, 96 px) checks the set-up in seconds; it is no measurement.

Shims: the authors' code was written for timm 0.4 (EViT) and timm 0.6 (ToMe). What timm 1.0 moved is supplied while
their modules are imported, and taken away afterwards; their files are never changed:

- EViT's `timm.models.layers` is `timm.layers` (moved in timm 0.9; the old path is a deprecated alias that warns).
- EViT's `timm.models.helpers` is a module holding `build_model_with_cfg`, `named_apply` and `adapt_input_conv` from
  `timm.models` (moved to private modules in timm 0.9; the old path is a deprecated alias that warns).
- EViT's `timm.models.registry` gives a `register_model` that registers nothing: their evit.py registers its models
  under timm's own names (deit_small_patch16_224, ...), which in timm 1.0's registry would replace timm's DeiT in
  `timm.create_model` for the rest of the process. The script builds their EViT class directly, never by name.
- EViT's helpers.py imports `torchprofile` (for MAC counts, not used here); where it isn't installed, a stand-in whose
  `profile_macs` raises is supplied.
- Their top-level module names (EViT's `evit` and `helpers`, ToMe's `tome`) are imported from the given folder, with
  anything else of that name set aside during the import and put back afterwards.

ToMe needs no shim for the models here: its patched Block and Attention skip timm 1.0's LayerScale, q/k norm and
attention mask, all of which DeiT and the showcase architecture lack; the agreement check would show it otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.util
import json
import math
import platform
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import timm
import torch
from torch import nn

import retokviz as rv
from retokviz._util.device import describe_device, resolve_device
from retokviz._util.files import check_output_files, write_atomically
from retokviz.methods.compose import token_counts
from retokviz.models.checkpoints import infer_model_kwargs
from retokviz.sweep.timing import time_interleaved

MODELS = ("deit_small", "showcase", "tiny")
DEFAULT_MODELS = ("deit_small", "showcase")
DEFAULT_BATCHES = (1, 16)
KEEP_RATE = 0.7
TOLERANCE = 1e-4
SEED = 0
CHECK_BATCH = 2          # images in the agreement check

EVIT_FILES = ("evit.py", "helpers.py")
TOME_FILE = Path("tome") / "patch" / "timm.py"
EVIT_REPO = "github.com/youweiliang/evit"
TOME_REPO = "github.com/facebookresearch/ToMe"


class AuthorsCodeError(Exception):
    """The authors' code is not where it was said to be, or does not import."""


# ------------------------------------------------------------------------------------------- the authors' code

def _under(name: str, roots: Sequence[str]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


@contextlib.contextmanager
def _importing_from(root: Path, own: Sequence[str], shims: dict[str, ModuleType]) -> Iterator[None]:
    """sys.path and sys.modules as the authors' code expects them while it is imported, put back afterwards: `root`
    first on sys.path, the `shims` in place of the modules they name, and the modules named `own` (and their
    submodules) absent before the import, so that the authors' are loaded from `root`, and absent after it, so that
    nothing of theirs is found by a later import."""
    names = tuple(own) + tuple(shims)
    saved = {name: module for name, module in sys.modules.items() if _under(name, names)}
    for name in saved:
        del sys.modules[name]
    sys.modules.update(shims)
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if _under(name, names)]:
            del sys.modules[name]
        sys.modules.update(saved)


def _evit_shims() -> dict[str, ModuleType]:
    """The modules of timm 0.4 (and torchprofile) that the authors' EViT imports, as timm 1.0 has them (see the
    module docstring)."""
    import timm.data  # noqa: F401  (imported before their folder is on sys.path: it holds a datasets.py of its own)
    import timm.layers
    import timm.models

    helpers = ModuleType("timm.models.helpers")
    helpers.build_model_with_cfg = timm.models.build_model_with_cfg
    helpers.named_apply = timm.models.named_apply
    helpers.adapt_input_conv = timm.models.adapt_input_conv
    registry = ModuleType("timm.models.registry")
    registry.register_model = lambda function: function      # registers nothing: timm's own DeiT stays timm's
    shims = {"timm.models.layers": timm.layers, "timm.models.helpers": helpers, "timm.models.registry": registry}
    if importlib.util.find_spec("torchprofile") is None:
        stand_in = ModuleType("torchprofile")

        def profile_macs(*args, **kwargs):
            raise RuntimeError("torchprofile is not installed (a stand-in was imported for the authors' EViT)")

        stand_in.profile_macs = profile_macs
        shims["torchprofile"] = stand_in
    return shims


def _check_folder(root: Path, option: str, repository: str, expected: Sequence[Path | str]) -> Path:
    listed = " and ".join(str(root / name) for name in expected)
    if not root.exists():
        raise AuthorsCodeError(f"{option} {root}: there is no such folder; expected a checkout of {repository} "
                               f"there, with {listed}")
    if not root.is_dir():
        raise AuthorsCodeError(f"{option} {root}: it is a file, not a folder; expected a checkout of {repository} "
                               f"there, with {listed}")
    missing = [str(root / name) for name in expected if not (root / name).is_file()]
    if missing:
        raise AuthorsCodeError(f"{option} {root}: {' and '.join(missing)} not found; expected a checkout of "
                               f"{repository} there (the folder at its top, holding {listed})")
    return root


def load_evit(path: str | Path) -> ModuleType:
    """The authors' evit.py, imported from the checkout at `path` (with the shims of the module docstring).

    Raises:
        AuthorsCodeError: no folder at `path`, no evit.py or helpers.py in it, or their import failed; the message
            names the path and the file expected.
    """
    root = _check_folder(Path(path).expanduser().resolve(), "--evit-code", EVIT_REPO, EVIT_FILES)
    try:
        with _importing_from(root, ("evit", "helpers"), _evit_shims()):
            module = importlib.import_module("evit")
    except Exception as error:
        raise AuthorsCodeError(f"--evit-code {root}: importing the authors' {root / 'evit.py'} failed: "
                               f"{type(error).__name__}: {error}") from error
    if not hasattr(module, "EViT"):
        raise AuthorsCodeError(f"--evit-code {root}: {root / 'evit.py'} has no class EViT; is it {EVIT_REPO}?")
    return module


def tome_root(path: str | Path) -> Path:
    """The checkout's folder: `path`, or the folder above where `path` is the package folder tome/ itself."""
    root = Path(path).expanduser().resolve()
    return root.parent if root.name == "tome" and (root / "patch" / "timm.py").is_file() else root


def load_tome(path: str | Path) -> ModuleType:
    """The authors' tome package, imported from the checkout at `path` (the folder holding tome/; the tome folder
    itself is taken too).

    Raises:
        AuthorsCodeError: no folder at `path`, no tome/patch/timm.py in it, or its import failed; the message names
            the path and the file expected.
    """
    root = _check_folder(tome_root(path), "--tome-code", TOME_REPO, (TOME_FILE,))
    try:
        with _importing_from(root, ("tome",), {}):
            module = importlib.import_module("tome")
            importlib.import_module("tome.patch.timm")
    except Exception as error:
        raise AuthorsCodeError(f"--tome-code {root}: importing the authors' package {root / 'tome'} failed: "
                               f"{type(error).__name__}: {error}") from error
    return module


def checkout(path: str | Path | None) -> str:
    """Where the authors' code came from, in words: its folder and git commit (with "local changes" where its
    tracked files differ from the commit), or that it is not a git checkout."""
    if path is None:
        return "not given"
    root = Path(path).expanduser().resolve()
    git = ["git", "-C", str(root)]
    try:
        top = subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
        if Path(top.stdout.strip()).resolve() != root:
            return f"{root} (not a git checkout: commit unknown)"
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{root} (not a git checkout: commit unknown)"
    return f"{root} (git commit {commit[:12]}{', with local changes' if changed else ''})"


# ------------------------------------------------------------------------------------------------------ models

def build_model(name: str) -> tuple[nn.Module, str]:
    """The untouched timm model `name` (one of MODELS), float32, eval mode, on the CPU, and what it is in words."""
    torch.manual_seed(SEED)
    if name == "deit_small":
        model = timm.create_model("deit_small_patch16_224", pretrained=False)
        return model.eval(), ("timm deit_small_patch16_224 with random weights (seed 0; speed does not depend on "
                              "them), 224 px, 196 patches")
    if name == "showcase":
        trained = rv.load_checkpoint("showcase-baseline")
        rv.remove(trained)
        kwargs = infer_model_kwargs(trained)
        architecture = trained.pretrained_cfg.get("architecture", "vit_tiny_patch16_224")
        model = timm.create_model(architecture, pretrained=False, **kwargs)
        shared = {key: value for key, value in trained.state_dict().items() if not key.startswith("patch_embed.")}
        missing, unexpected = model.load_state_dict(shared, strict=False)
        if unexpected or any(not key.startswith("patch_embed.") for key in missing):
            raise RuntimeError(f"showcase-baseline's weights don't fit {architecture} {kwargs}: missing {missing}, "
                               f"unexpected {unexpected}")
        return model.eval(), (f"the showcase architecture ({architecture}, embed_dim {kwargs['embed_dim']}, depth "
                              f"{kwargs['depth']}, {kwargs['num_heads']} heads, {kwargs['img_size']} px) with "
                              "showcase-baseline's transformer weights and timm's plain 16 x 16 patchify (random) in "
                              "place of its coherence stem, which the authors' classes lack: every row, the "
                              "untouched one included, is timed without the stem")
    if name == "tiny":
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, embed_dim=48, depth=4, num_heads=3,
                                  img_size=96, num_classes=10)
        return model.eval(), "a tiny random ViT (4 blocks, width 48, 96 px): a check of the set-up, not a measurement"
    raise ValueError(f"unknown model {name!r}; give one of {', '.join(MODELS)}")


def image_size(model: nn.Module) -> tuple[int, int]:
    rows, cols = model.patch_embed.img_size
    return int(rows), int(cols)


def their_evit(evit: ModuleType, model: nn.Module, keep_rate: float, layers: Sequence[int]) -> nn.Module:
    """The authors' EViT class with `model`'s architecture and weights, reducing at `layers` with their fused token."""
    depth = len(model.blocks)
    attention = model.blocks[0].attn
    theirs = evit.EViT(
        img_size=image_size(model)[0], patch_size=model.patch_embed.patch_size[0], in_chans=3,
        num_classes=model.num_classes, embed_dim=model.embed_dim, depth=depth, num_heads=attention.num_heads,
        mlp_ratio=model.blocks[0].mlp.fc1.out_features / model.embed_dim, qkv_bias=attention.qkv.bias is not None,
        keep_rate=tuple(keep_rate if block in layers else 1 for block in range(depth)), fuse_token=True)
    theirs.load_state_dict(model.state_dict(), strict=True)
    return theirs.eval()


def their_tome(tome: ModuleType, model: nn.Module, r: int | Sequence[int]) -> nn.Module:
    """A copy of `model` patched by the authors' `tome.patch.timm`, merging r tokens per block (an int, or a list
    with one per block: a tuple would be read by them as (r, inflection))."""
    theirs = copy.deepcopy(model)
    tome.patch.timm(theirs)
    theirs.r = r if isinstance(r, int) else list(r)
    return theirs.eval()


def ours(model: nn.Module, method: rv.Method) -> nn.Module:
    """A copy of `model` with `method` applied by retokviz."""
    return rv.apply(copy.deepcopy(model), method).eval()


# ------------------------------------------------------------------------------------------------------- pairs

@dataclass
class Pair:
    """One method, ours and the authors', on one model.

    Attributes:
        method: "EViT" or "ToMe"; setting: its settings in words.
        ours: retokviz's; theirs: the authors' (None where their code was not given).
        skipped: why the authors' row is missing (None where it is there).
        max_abs, relative: the logits' largest difference and that over the largest |logit| (None until checked).
        agree: the check's verdict (None until checked, or with no authors' code); a pair that disagrees is not timed.
        ceiling: untouched MACs / our MACs, the speed-up the MACs allow.
    """

    method: str
    setting: str
    ours: nn.Module
    theirs: nn.Module | None
    skipped: str | None = None
    max_abs: float | None = None
    relative: float | None = None
    agree: bool | None = None
    ceiling: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def timed(self) -> bool:
        return self.agree is not False


def _r_words(r: int | Sequence[int]) -> str:
    if isinstance(r, int):
        return f"r = {r} per block"
    runs = []
    for value in r:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return "r per block " + ", ".join(f"{value}" if count == 1 else f"{value} x {count}" for value, count in runs)


def make_pairs(model: nn.Module, evit: ModuleType | None, tome: ModuleType | None,
               keep_rate: float = KEEP_RATE) -> list[Pair]:
    """EViT at `keep_rate` and ToMe at its token budget, ours and (where the code is given) the authors'."""
    depth, patches = len(model.blocks), model.patch_embed.num_patches
    evit_method = rv.EViT(keep_rate=keep_rate)
    layers = evit_method.reduction_layers(depth)
    tome_method = rv.method_at("tome", model, keep_rate=keep_rate)
    final = token_counts(evit_method, depth, patches)[-1]
    tome_final = token_counts(tome_method, depth, patches)[-1]
    base_macs = rv.count_macs(model)
    pairs = []
    for name, method, setting, theirs, missing in (
            ("EViT", evit_method, f"keep {keep_rate:g} at blocks {tuple(layers)}, fused token; {final} patch tokens "
             "leave the last block",
             (lambda: their_evit(evit, model, keep_rate, layers)) if evit else None, "--evit-code"),
            ("ToMe", tome_method, f"{_r_words(tome_method.r)} (EViT {keep_rate:g}'s budget: {tome_final} patch "
             f"tokens leave the last block, EViT's {final})",
             (lambda: their_tome(tome, model, tome_method.r)) if tome else None, "--tome-code")):
        mine = ours(model, method)
        pair = Pair(name, setting, mine, theirs() if theirs else None,
                    skipped=None if theirs else f"the authors' {name} skipped: no {missing} given",
                    ceiling=base_macs / rv.count_macs(mine))
        pair.details = {"layers": list(layers)} if name == "EViT" else {
            "r": tome_method.r if isinstance(tome_method.r, int) else list(tome_method.r)}
        pairs.append(pair)
    return pairs


def random_images(batch: int, size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(SEED)
    return torch.randn(batch, 3, *size, generator=generator).to(device)


def check_agreement(pair: Pair, images: torch.Tensor, tolerance: float = TOLERANCE) -> Pair:
    """Compare the pair's logits on `images` (sets max_abs, relative and agree; a pair that disagrees gets a
    `skipped` saying why and is not timed). A pair without the authors' model is left unchecked."""
    if pair.theirs is None:
        return pair
    with torch.inference_mode():
        mine, theirs = pair.ours(images), pair.theirs(images)
    if mine.shape != theirs.shape:
        pair.agree = False
        pair.skipped = f"not timed: the logits' shapes differ, ours {tuple(mine.shape)}, the authors' " \
                       f"{tuple(theirs.shape)}"
        return pair
    pair.max_abs = float((mine - theirs).abs().max())
    scale = float(theirs.abs().max())
    pair.relative = pair.max_abs / scale if scale > 0 else math.inf
    pair.agree = bool(pair.relative < tolerance) and math.isfinite(pair.max_abs)
    if not pair.agree:
        pair.skipped = (f"not timed: ours and the authors' compute different things (max |logit difference| "
                        f"{pair.max_abs:.3g}, {pair.relative:.3g} of the largest |logit|, tolerance {tolerance:g})")
    return pair


# ------------------------------------------------------------------------------------------------------ timing

def time_batch(model_name: str, model: nn.Module, pairs: Sequence[Pair], batch: int, device: torch.device,
               warmup: int, iters: int, rounds: int) -> list[dict]:
    """The untouched model and every pair that agreed, taking turns over the rounds: one row each."""
    entries: list[tuple[str, str, str, nn.Module, Pair | None]] = [("untouched", "untouched", "", model, None)]
    for pair in pairs:
        if not pair.timed:
            continue
        entries.append((pair.method, "ours", pair.setting, pair.ours, pair))
        if pair.theirs is not None:
            entries.append((pair.method, "authors'", pair.setting, pair.theirs, pair))
    for _, _, _, module, _ in entries:
        module.to(device)
    runners = [lambda module=module: contextlib.nullcontext(module) for _, _, _, module, _ in entries]
    timings = time_interleaved(runners, random_images(batch, image_size(model), device), warmup=warmup, iters=iters,
                               rounds=rounds)
    untouched = timings[0].median
    medians = {(entry[0], entry[1]): timing.median for entry, timing in zip(entries, timings)}
    rows = []
    for (method, code, setting, _, pair), timing in zip(entries, timings):
        other = medians.get((method, "authors'" if code == "ours" else "ours")) if pair else None
        ratio = None
        if other is not None:
            ratio = other / timing.median if code == "ours" else timing.median / other
        rows.append({
            "model": model_name, "batch": batch, "method": method, "code": code, "setting": setting,
            "ms_per_batch": timing.median * 1000, "images_per_s": batch / timing.median,
            "speedup": untouched / timing.median, "macs_ceiling": pair.ceiling if pair else 1.0,
            "ours_over_authors": ratio, "spread": timing.spread, "seconds": list(timing.seconds)})
    return rows


# ----------------------------------------------------------------------------------------------------- report

def conditions(args: argparse.Namespace, device: torch.device, described: dict[str, str]) -> dict[str, object]:
    return {
        "command": "python benchmarks/against_authors.py " + " ".join(args.argv),
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
        "retokviz": rv.__version__,
        "evit_code": checkout(args.evit_code) if args.evit_code else "not given: the authors' rows skipped",
        "tome_code": checkout(tome_root(args.tome_code)) if args.tome_code else "not given: the authors' rows skipped",
        "models": described,
        "timing": (f"inference mode, fp32, random inputs; each configuration 1 untimed pass, then per round "
                   f"{args.warmup} untimed and {args.iters} timed passes; {_rounds(args.rounds)}, the configurations "
                   "taking turns (reversed every other round); the median round is reported"),
        "agreement": (f"logits of {CHECK_BATCH} random images, max |ours - authors'| / max |authors'| < "
                      f"{args.tolerance:g} before a pair is timed"),
    }


def _rounds(count: int) -> str:
    return f"{count} round{'s' if count != 1 else ''}"


def _cell(value: object, form: str) -> str:
    return "-" if value is None else format(value, form)


def format_markdown(info: dict, checks: list[dict], rows: list[dict]) -> str:
    lines = ["# retokviz against the authors' code", "", "Conditions:", ""]
    for key in ("command", "device", "threads", "torch", "timm", "python", "retokviz", "evit_code", "tome_code",
                "timing", "agreement"):
        lines.append(f"- {key.replace('_', ' ')}: {info[key]}")
    for name, words in info["models"].items():
        lines.append(f"- model {name}: {words}")
    lines += ["", "## Do the pairs compute the same thing?", "",
              "| model | method | setting | max abs logit difference | relative | verdict |",
              "|---|---|---|---|---|---|"]
    for check in checks:
        verdict = ("agree" if check["agree"] else "DIFFER: not timed") if check["agree"] is not None \
            else check["skipped"]
        lines.append(f"| {check['model']} | {check['method']} | {check['setting']} | {_cell(check['max_abs'], '.2e')} "
                     f"| {_cell(check['relative'], '.2e')} | {verdict} |")
    lines += ["", "## Speed", "",
              "Speed-up: the untouched model's time / this row's, in the same run. MACs ceiling: the untouched "
              "model's MACs / the method's, the speed-up its MACs allow. Ours / authors': the authors' time / ours "
              "(above 1: ours is faster). Spread: (slowest round - fastest) / median.", "",
              "| model | batch | method | code | ms per batch | images/s | speed-up | MACs ceiling | ours / authors' "
              "| spread |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['batch']} | {row['method']} | {row['code']} | "
                     f"{row['ms_per_batch']:.2f} | {row['images_per_s']:.1f} | {row['speedup']:.2f}x | "
                     f"{row['macs_ceiling']:.2f}x | {_cell(row['ours_over_authors'], '.2f')} | "
                     f"{_cell(None if row['spread'] is None else 100 * row['spread'], '.0f')}"
                     f"{'' if row['spread'] is None else ' %'} |")
    notes = {(check["skipped"] if check["agree"] is None else f"{check['model']}, {check['method']}: "
              f"{check['skipped']}"): None for check in checks if check["skipped"]}     # in order, once each
    if notes:
        lines += ["", *[f"- {line}" for line in notes]]
    return "\n".join(lines) + "\n"


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, evit: ModuleType | None, tome: ModuleType | None) -> dict:
    """Check, then time, every model at every batch; returns {"conditions", "checks", "rows", "markdown"}."""
    device = resolve_device(args.device)
    described, checks, rows = {}, [], []
    for line in ([] if evit else ["the authors' EViT rows are skipped: no --evit-code given"]) + \
                ([] if tome else ["the authors' ToMe rows are skipped: no --tome-code given"]):
        _note(line)
    for name in args.models:
        model, described[name] = build_model(name)          # on the CPU: the pairs are made and checked there
        pairs = make_pairs(model, evit, tome, args.keep_rate)
        images = random_images(CHECK_BATCH, image_size(model))
        for pair in pairs:
            check_agreement(pair, images, args.tolerance)
            checks.append({"model": name, "method": pair.method, "setting": pair.setting, "max_abs": pair.max_abs,
                           "relative": pair.relative, "agree": pair.agree, "skipped": pair.skipped, **pair.details})
            said = (f"max |logit difference| {pair.max_abs:.2e} ({pair.relative:.2e} relative): agree"
                    if pair.agree else pair.skipped)
            _note(f"{name}, {pair.method} ({pair.setting}), ours against the authors': {said}")
        for batch in args.batches:
            _note(f"timing {name} at batch {batch} ({_rounds(args.rounds)})...")
            rows += time_batch(name, model, pairs, batch, device, args.warmup, args.iters, args.rounds)
    info = conditions(args, device, described)
    return {"conditions": info, "checks": checks, "rows": rows, "markdown": format_markdown(info, checks, rows)}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/against_authors.py",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="The module docstring says what is compared, and the shims applied to the "
                                            "authors' code.")
    parser.add_argument("--evit-code", type=Path, help=f"a checkout of {EVIT_REPO} (evit.py at its top); without it "
                        "the authors' EViT rows are skipped")
    parser.add_argument("--tome-code", type=Path, help=f"a checkout of {TOME_REPO} (the folder holding tome/); "
                        "without it the authors' ToMe rows are skipped")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(DEFAULT_MODELS),
                        help=f"default: {' '.join(DEFAULT_MODELS)}; tiny checks the set-up in seconds")
    parser.add_argument("--batches", nargs="+", type=_positive, default=list(DEFAULT_BATCHES),
                        help=f"default: {' '.join(map(str, DEFAULT_BATCHES))}")
    parser.add_argument("--rounds", type=_positive, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=_non_negative, default=3, help="untimed passes per turn (default 3)")
    parser.add_argument("--iters", type=_positive, default=10, help="timed passes per turn (default 10)")
    parser.add_argument("--keep-rate", type=_rate, default=KEEP_RATE, help=f"EViT's (default {KEEP_RATE})")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"largest relative logit difference for a pair to be timed (default {TOLERANCE:g})")
    parser.add_argument("--threads", type=_positive, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    parser.add_argument("--json", type=Path, help="also write the conditions, checks and rows to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    options = parser()
    args = options.parse_args(argv)
    args.argv = argv
    check_output_files(options, json=args.json)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        resolve_device(args.device)
        evit = load_evit(args.evit_code) if args.evit_code else None
        tome = load_tome(args.tome_code) if args.tome_code else None
    except (AuthorsCodeError, ValueError) as error:
        options.error(str(error))
    result = run(args, evit, tome)
    print(result["markdown"], end="")
    if args.json:
        data = json.dumps({key: result[key] for key in ("conditions", "checks", "rows")}, indent=1).encode()
        write_atomically(args.json, lambda file: file.write(data))
    return result


if __name__ == "__main__":
    main()
