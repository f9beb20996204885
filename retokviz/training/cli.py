"""Train a timm ViT with a reduction method (the DeiT recipe with EViT's keep-rate schedule) and export it.

    python -m retokviz.training --method evit --keep-rate 0.7 --out runs/evit              # the generated data
    python -m retokviz.training --quick --method evit --keep-rate 0.7 --out runs/try       # one short epoch: a check
    python -m retokviz.training --data /data/imagenette --model deit_small_patch16_224 --img-size 224 ...
    python -m retokviz.training ... --resume --out runs/evit                               # after an interruption
    python -m retokviz.training ... --init showcase-baseline --method evit --keep-rate 0.7  # fine-tune a checkpoint
    torchrun --nproc_per_node 4 -m retokviz.training ...                                 # the same, on 4 GPUs

This module builds the model and the data from the options and calls `rv.train` (retokviz/training.py), then
`rv.export_checkpoint` for --export. Before anything is generated or trained it checks all it can: the options, the
device, the output folders (--out, --export-dir), --resume against the run in --out (its recipe, method, model and
data options must be the ones given), --export against a checkpoint of that name (replaced only with --force), the
number of classes, and for --export the model's size. Where --warmup-epochs, --keep-warmup-epochs or
--keep-decay-epochs are not given, their defaults are shortened to fit --epochs, so that a short run (--epochs 1,
--quick) works.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn
from torch.utils.data import Dataset

from retokviz._util.device import describe_device, resolve_device
from retokviz.methods.registry import method_spec
from retokviz.models.checkpoints import DATA_DIR, MAX_BYTES, export_checkpoint
from retokviz.methods.base import Method
from retokviz.methods.registry import method_class, method_names
from retokviz.training.losses import uses_teacher
from retokviz._util.files import check_writable_folder
from retokviz.training.config import TrainConfig, TrainResult
from retokviz.training.distributed import Ranks
from retokviz.training.loop import train
from retokviz.training.resume import check_run_folder
from retokviz.training.schedule import check_schedule, keep_rate_targets

NO_METHOD = "none"
# The method options and the field each sets.
METHOD_OPTIONS = (("--keep-rate", "keep_rate"), ("--r", "r"), ("--layers", "layers"))
# The model and data options: with the recipe and the method they define the run, so they are recorded in last.pt
# and --resume refuses to change them.
RUN_OPTIONS = ("model", "img_size", "embed_dim", "depth", "num_heads", "num_classes", "coherence_stem", "data",
               "train_size", "test_size", "data_seed", "auto_augment")
# The values of the options that --quick changes, without and with it (an option given wins).
DEFAULTS = {"epochs": TrainConfig.epochs, "train_size": 5000, "test_size": 1000}
QUICK = {"epochs": 1, "train_size": 512, "test_size": 256}


@dataclass
class Plan:
    """A command line, checked: what to train and how, and where the outputs go."""

    config: TrainConfig
    method: Method | None
    device: torch.device
    settings: dict[str, Any]                      # the RUN_OPTIONS, recorded in last.pt
    model_kwargs: dict[str, Any]                  # timm.create_model's
    export_path: Path | None                      # --export's file
    resumed_epochs: int                           # the epochs the run in --out has done (0: a new run)
    shortened: list[str]                          # the defaults shortened to fit --epochs, in words
    folders: tuple[Dataset, Dataset] | None       # --data PATH's train and val sets; None: clutter, made later


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m retokviz.training", description=__doc__.split("\n\n")[0])
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="vit_tiny_patch16_224", help="a timm ViT name (never downloaded)")
    model.add_argument("--img-size", type=int, default=128)
    model.add_argument("--embed-dim", type=int, default=192)
    model.add_argument("--depth", type=int, default=6, help="6 keeps the default model under 12 MB")
    model.add_argument("--num-heads", type=int, default=3)
    model.add_argument("--num-classes", type=int, help="default: the data set's number of classes")
    model.add_argument("--coherence-stem", action="store_true", help="ImagePiece's local-coherence conv stem")
    model.add_argument("--init", metavar="CHECKPOINT",
                       help="start from these weights (a bundled checkpoint's name or a .safetensors file), to "
                            "fine-tune it; the model options must describe the same model")
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="clutter", help="'clutter' (generated) or a folder with train/ and val/")
    data.add_argument("--train-size", type=int, help=f"clutter: training images (default {DEFAULTS['train_size']}, "
                                                     f"{QUICK['train_size']} with --quick)")
    data.add_argument("--test-size", type=int, help=f"clutter: test images (default {DEFAULTS['test_size']}, "
                                                    f"{QUICK['test_size']} with --quick)")
    data.add_argument("--data-seed", type=int, default=0, help="clutter: the random seed the images are drawn from")
    data.add_argument("--auto-augment", help="folder: timm's auto_augment, e.g. rand-m9-mstd0.5-inc1 (RandAugment)")
    method = parser.add_argument_group("method")
    method.add_argument("--method", choices=(NO_METHOD, *method_names()), default=NO_METHOD)
    method.add_argument("--keep-rate", type=float, help="evit, imagepiece: the keep rate, in (0, 1]")
    method.add_argument("--r", type=int, help="tome: tokens merged per block")
    method.add_argument("--layers", type=int, nargs="+", help="the reduction blocks, 0-based")
    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--quick", action="store_true",
                        help="a quick check that everything works: " + ", ".join(
                            f"--{name.replace('_', '-')} {value}" for name, value in QUICK.items())
                        + " (where not given)")
    recipe.add_argument("--epochs", type=int, help=f"default {DEFAULTS['epochs']}, {QUICK['epochs']} with --quick")
    recipe.add_argument("--batch-size", type=int, default=defaults.batch_size, help="global, over all ranks")
    recipe.add_argument("--lr", type=float, help="default: 5e-4 x batch-size / 512")
    recipe.add_argument("--min-lr", type=float, help="default: lr / 50")
    recipe.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    recipe.add_argument("--backbone-lr-scale", type=float, default=defaults.backbone_lr_scale,
                        help="the model's own parameters learn at this fraction of --lr, a method's added modules "
                             "(DynamicViT's predictors) at --lr; DynamicViT's authors fine-tune with 0.01")
    recipe.add_argument("--distill-weight", type=float, default=defaults.distill_weight,
                        help="dynamicvit: the weight of distillation from the model as training starts; "
                             "0 from scratch (there is no teacher then)")
    recipe.add_argument("--warmup-epochs", type=int,
                        help=f"default {defaults.warmup_epochs}, at most epochs - 1")
    recipe.add_argument("--keep-warmup-epochs", type=int,
                        help=f"default {defaults.keep_warmup_epochs}, at most epochs - 1")
    recipe.add_argument("--keep-decay-epochs", type=int,
                        help=f"default {defaults.keep_decay_epochs}, at most the epochs after the keep warm-up")
    recipe.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    recipe.add_argument("--mixup", type=float, default=defaults.mixup, help="alpha, e.g. 0.8 (DeiT)")
    recipe.add_argument("--cutmix", type=float, default=defaults.cutmix, help="alpha, e.g. 1.0 (DeiT)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    run.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    run.add_argument("--num-workers", type=int, default=defaults.num_workers)
    run.add_argument("--out", default="runs/train", help="where last.pt and metrics.jsonl go")
    run.add_argument("--resume", action="store_true", help="continue the run in --out (its last.pt)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar, no line per epoch")
    run.add_argument("--export", metavar="NAME", help="then write NAME.safetensors for rv.load_checkpoint")
    run.add_argument("--export-dir", default=str(DATA_DIR), help="where --export writes (default: data/)")
    run.add_argument("--force", action="store_true", help="let --export replace a checkpoint of the same name")
    return parser


def main(argv: list[str] | None = None) -> TrainResult:
    """Run the command line `argv` (default: sys.argv[1:]). Bad input ends it (SystemExit, with the reason) before
    any data are generated or any model trained."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    _fill_presets(args)
    _check_arguments(parser, args)
    try:
        plan = make_plan(args)
        model = build_model(args, plan)
    except (ValueError, TypeError, OSError) as error:
        parser.error(str(error))
    ranks = Ranks.from_env()
    if ranks.is_main:
        print(describe_conditions(args, plan), flush=True)
    train_set, test_set = plan.folders or _generate_clutter(args)
    result = train(model, train_set, test_set, plan.config, plan.method, resume=args.resume, settings=plan.settings)
    if plan.export_path is not None and ranks.is_main:
        _export(model, argv, args, plan, result)
    return result


# ------------------------------------------------------------------------------------------- the options

def _fill_presets(args: argparse.Namespace) -> None:
    """Set the options --quick changes that were not given: to QUICK's values with --quick, else DEFAULTS'."""
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error on options out of range or that don't go together."""
    for option in ("img_size", "embed_dim", "depth", "num_heads", "num_classes", "train_size", "test_size"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.embed_dim % args.num_heads:
        parser.error(f"embed_dim {args.embed_dim} is not divisible by num_heads {args.num_heads} (--embed-dim, "
                     "--num-heads): each attention head takes embed_dim / num_heads channels")
    if args.data_seed < 0:
        parser.error(f"--data-seed must be >= 0, got {args.data_seed}")
    if args.export is not None and (not args.export or Path(args.export).name != args.export
                                    or args.export.endswith(".safetensors")):
        parser.error(f"--export takes a file name without folder or suffix, got {args.export!r}")
    if args.auto_augment is not None and args.data == "clutter":
        parser.error("--auto-augment applies to image folders (--data PATH), not to the generated clutter data")


def _method_from_args(args: argparse.Namespace) -> Method | None:
    """The method the options ask for; ValueError or TypeError on options that don't apply or bad values."""
    cls = None if args.method == NO_METHOD else method_class(args.method)
    fields = {field.name for field in dataclasses.fields(cls)} if cls else set()
    kwargs = {}
    for option, name in METHOD_OPTIONS:
        value = getattr(args, name)
        if value is None:
            continue
        if name not in fields:
            raise ValueError(f"{option} does not apply to --method {args.method}")
        kwargs[name] = tuple(value) if name == "layers" else value
    return None if cls is None else cls(**kwargs)


def _fitted_schedule(args: argparse.Namespace) -> tuple[dict[str, int], list[str]]:
    """The warm-up and keep-rate schedule's epochs: as given, or their defaults shortened to fit --epochs.

    Returns:
        the TrainConfig fields, and a note for each default that was shortened.
    """
    defaults, epochs = TrainConfig(), args.epochs
    fitted = {"warmup_epochs": min(defaults.warmup_epochs, epochs - 1),
              "keep_warmup_epochs": min(defaults.keep_warmup_epochs, epochs - 1)}
    keep_warmup = args.keep_warmup_epochs if args.keep_warmup_epochs is not None else fitted["keep_warmup_epochs"]
    fitted["keep_decay_epochs"] = min(defaults.keep_decay_epochs, max(0, epochs - keep_warmup))
    schedule, shortened = {}, []
    for name, value in fitted.items():
        given = getattr(args, name)
        schedule[name] = given if given is not None else max(0, value)
        if given is None and schedule[name] < getattr(defaults, name):
            shortened.append(f"--{name.replace('_', '-')} {schedule[name]} (default {getattr(defaults, name)})")
    return schedule, shortened


def _config_from_args(args: argparse.Namespace, schedule: dict[str, int]) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
        weight_decay=args.weight_decay, backbone_lr_scale=args.backbone_lr_scale, distill_weight=args.distill_weight,
        label_smoothing=args.label_smoothing, mixup=args.mixup, cutmix=args.cutmix,
        seed=args.seed, device=args.device, amp=not args.no_amp, num_workers=args.num_workers, out_dir=args.out,
        progress=not args.no_progress, **schedule,
    )


# -------------------------------------------------------------------------------------------- the checks

def make_plan(args: argparse.Namespace) -> Plan:
    """Check the options and everything they point at, cheapest first; nothing is generated or trained.

    Raises:
        ValueError, TypeError, OSError: the first problem found, in words that name the option.
    """
    method = _method_from_args(args)
    schedule, shortened = _fitted_schedule(args)
    config = _config_from_args(args, schedule)
    check_schedule(config, method)
    if uses_teacher(method) and config.distill_weight > 0 and args.init is None:
        raise ValueError(f"--method {args.method} distils from the model as training starts, and without --init that "
                         f"model is untrained: give --init CHECKPOINT to fine-tune, or --distill-weight 0 to train "
                         f"from scratch without a teacher (got --distill-weight {config.distill_weight})")
    if not keep_rate_targets(method):
        shortened = [note for note in shortened if not note.startswith("--keep")]
    device = resolve_device(config.device, Ranks.from_env().local_rank)
    settings = {name: getattr(args, name) for name in RUN_OPTIONS}
    if args.init is not None:    # recorded only where given, so that runs from before --init still resume
        settings["init"] = args.init
    check_writable_folder(args.out, "--out")
    resumed_epochs = check_run_folder(config, method, resume=args.resume, settings=settings)
    export_path = _export_path(args)
    folders = None if args.data == "clutter" else _load_folders(args)
    model_kwargs = {"num_classes": _num_classes(args, folders), "img_size": args.img_size,
                    "embed_dim": args.embed_dim, "depth": args.depth, "num_heads": args.num_heads}
    return Plan(config, method, device, settings, model_kwargs, export_path, resumed_epochs, shortened, folders)


def _export_path(args: argparse.Namespace) -> Path | None:
    """--export's file, checked to be writable and not to replace a checkpoint without --force."""
    if args.export is None:
        return None
    check_writable_folder(args.export_dir, "--export-dir")
    path = Path(args.export_dir) / f"{args.export}.safetensors"
    if path.exists() and not path.is_file():
        raise IsADirectoryError(f"--export {args.export}: {path} is a folder, not a checkpoint file")
    if path.exists() and not args.force:
        raise FileExistsError(f"--export {args.export}: {path} exists already; pass --force to replace it, or "
                              "choose another name")
    return path


def _num_classes(args: argparse.Namespace, folders: tuple[Dataset, Dataset] | None) -> int:
    """--num-classes, or the data's number of classes; ValueError if --num-classes is below the data's."""
    from retokviz import data   # imported here: it is the slow import (scikit-learn, scikit-image)

    if folders is None:
        classes, source = len(data.ClutterDataset.classes), "the generated clutter data"
    else:
        train_set, test_set = folders
        if train_set.classes != test_set.classes:
            raise ValueError(f"--data {args.data}: train/ has the classes {train_set.classes} but val/ has "
                             f"{test_set.classes}; both need the same class folders")
        classes, source = len(train_set.classes), f"--data {args.data}"
    if args.num_classes is None:
        return classes
    if args.num_classes < classes:
        raise ValueError(f"--num-classes {args.num_classes} is below the {classes} classes of {source}; pass "
                         f"--num-classes {classes} or more, or leave it out")
    return args.num_classes


def build_model(args: argparse.Namespace, plan: Plan) -> nn.Module:
    """The model the options describe, its initial weights drawn from --seed; ValueError if timm can't build it
    or, for --export, if it is too big for a bundled checkpoint."""
    torch.manual_seed(args.seed)
    try:
        model = timm.create_model(args.model, pretrained=False, **plan.model_kwargs)
    except (RuntimeError, TypeError, AssertionError) as error:   # timm: an unknown name, options it doesn't take
        raise ValueError(f"--model {args.model}: timm can't build it with {plan.model_kwargs}: {error}") from error
    if args.coherence_stem:
        from retokviz.models.stem import use_coherence_stem

        use_coherence_stem(model)
    if args.init is not None:
        _load_initial_weights(model, args.init)
    weight_bytes = sum(4 * value.numel() for value in model.state_dict().values())
    if plan.export_path is not None and weight_bytes > MAX_BYTES:
        raise ValueError(f"--export: this model's float32 weights take {weight_bytes:,} bytes, over the "
                         f"{MAX_BYTES:,} bytes a bundled checkpoint may have; lower --depth or --embed-dim")
    return model


def _load_initial_weights(model: nn.Module, checkpoint: str) -> None:
    """--init: load a checkpoint's weights into `model`, all of them; ValueError naming what does not fit."""
    from retokviz.models.checkpoints import checkpoint_weights

    weights = checkpoint_weights(checkpoint)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ValueError(f"--init {checkpoint}: its weights don't fit the model the options describe (give the "
                         f"--img-size, --embed-dim, --depth, --num-heads and --coherence-stem it was trained "
                         f"with): {str(error)[:400]}") from error


# ------------------------------------------------------------------------------------------- data, output

def _load_folders(args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    """--data PATH's train and val sets (listing the files only: images are read as training goes)."""
    from retokviz import data

    return (data.image_folder(args.data, "train", args.img_size, True, auto_augment=args.auto_augment),
            data.image_folder(args.data, "val", args.img_size, False))


def _generate_clutter(args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    """The generated training and test sets the options ask for."""
    from retokviz import data

    return (data.ClutterDataset(args.train_size, args.data_seed, "train", args.img_size),
            data.ClutterDataset(args.test_size, args.data_seed, "test", args.img_size))


def describe_conditions(args: argparse.Namespace, plan: Plan) -> str:
    """The conditions of a run, printed before it starts."""

    ranks = Ranks.from_env()
    config, method, device = plan.config, plan.method, plan.device
    if plan.folders is None:
        data = f"clutter, data seed {args.data_seed}: {args.train_size} train / {args.test_size} test images"
    else:
        data = (f"folder {args.data}, auto_augment {args.auto_augment}: {len(plan.folders[0])} train / "
                f"{len(plan.folders[1])} test images")
    targets = keep_rate_targets(method)
    conditions = {
        "model": f"{args.model} {plan.model_kwargs}" + (" + coherence stem" if args.coherence_stem else "")
                 + (f", starting from the weights of {args.init}" if args.init else ""),
        "data": data,
        "method": method_spec(method) or NO_METHOD,
        "epochs": config.epochs,
        "batch": f"{config.batch_size} global = {config.batch_size // ranks.world_size} x {ranks.world_size} ranks",
        "lr": f"AdamW {config.peak_lr:.3g} -> {config.final_lr:.3g} (cosine), warm-up {config.warmup_epochs} "
              f"epochs, weight decay {config.weight_decay}"
              + (f", the model's own parameters at {config.backbone_lr_scale:g} x lr"
                 if config.backbone_lr_scale != 1 else ""),
        "keep schedule": (f"1.0 for {config.keep_warmup_epochs} epochs, cosine to {targets[0]} over "
                          f"{config.keep_decay_epochs}" if targets else "none"),
        **({"distillation": (f"weight {config.distill_weight}, from the model as it starts" if config.distill_weight
                             else "none (no teacher)")} if uses_teacher(method) else {}),
        "regularisation": f"label smoothing {config.label_smoothing}, mixup {config.mixup}, cutmix {config.cutmix}",
        "device": f"{describe_device(device)}, {'bf16 autocast' if config.amp and device.type == 'cuda' else 'fp32'}",
        "seed": f"{config.seed}, deterministic algorithms: {config.deterministic}",
        "out": f"{config.out_dir}" + (f" (resuming after epoch {plan.resumed_epochs})" if args.resume else ""),
        "export": "none" if plan.export_path is None else f"{plan.export_path}" + (" (replacing it)" if
                                                                                  plan.export_path.exists() else ""),
        "versions": f"torch {torch.__version__}, timm {timm.__version__}",
    }
    if plan.shortened:
        conditions["shortened"] = f"to fit {config.epochs} epochs: {', '.join(plan.shortened)}"
    return "\n".join(f"{key:>15}: {value}" for key, value in conditions.items())


def _export(model: nn.Module, argv: list[str], args: argparse.Namespace, plan: Plan, result: TrainResult) -> None:
    """Write the trained model to --export's file, with the recipe that made it."""

    recipe = {
        "command": shlex.join(["python", "-m", "retokviz.training", *argv]),
        "seed": args.seed, "world_size": Ranks.from_env().world_size, "device": describe_device(plan.device),
        "seconds": sum(record["seconds"] for record in result.history),
        "epochs": plan.config.epochs, "test_acc": result.metrics["test_acc"],
        "test_loss": result.metrics["test_loss"], "torch": torch.__version__, "timm": timm.__version__,
    }
    info = export_checkpoint(model, plan.export_path, recipe=recipe, model_name=args.model,
                             model_kwargs=plan.model_kwargs)
    print(f"exported {info.path} ({info.size_bytes / 1e6:.1f} MB, test accuracy {info.accuracy:.1%})")
