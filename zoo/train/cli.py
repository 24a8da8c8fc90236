"""``zoo train``: a registered network on the user's data, with its paper's recipe or the
fine-tuning one, on one process or many (torchrun / ``--nproc``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_commands", "run_train", "build_model"]


def build_model(name: str, recipe, *, num_classes=None, frames=None, init=None, weights_dir=None,
                checkpoint=None, seed: int = 0):
    """The model a run starts from: ImageNet initialisation (paper recipes), the variant's
    converted/hosted weights with a new head (fine-tuning), a safetensors state dict, or random."""
    import torch

    from ..factory import create_model
    from ..registry import Variant, registry

    init = init or recipe.init
    over = {k: v for k, v in (("num_classes", num_classes), ("num_frames", frames)) if v is not None}
    torch.manual_seed(seed)  # every rank builds the same initial model
    if checkpoint:
        from safetensors.torch import load_file

        model = create_model(name, **over)
        sd = load_file(checkpoint)
        own = model.state_dict()
        head = {k for k, v in sd.items() if k in own and own[k].shape != v.shape and k.startswith("fc.")}
        missing, unexpected = model.load_state_dict({k: v for k, v in sd.items() if k not in head}, strict=False)
        if unexpected or set(missing) - {k for k in own if k.startswith("fc.")}:
            raise ValueError(f"{checkpoint} does not fit {name}: missing {sorted(missing)[:5]}, unexpected "
                             f"{sorted(unexpected)[:5]}")
        return model, f"checkpoint {checkpoint}" + (" (new head)" if head else "")
    if init == "pretrained":
        if not isinstance(registry().resolve(name), Variant):
            raise ValueError(f"{name} is an architecture: fine-tuning starts from a trained variant's weights "
                             "(a variant name, or --checkpoint FILE.safetensors)")
        return create_model(name, pretrained=True, weights_dir=weights_dir, **over), "pretrained"
    if init == "imagenet":
        return create_model(name, pretrained_backbone=True, **over), "imagenet"
    if init == "none":
        return create_model(name, **over), f"random (seed {seed})"
    raise ValueError(f"--init must be imagenet, pretrained or none, got {init!r}")


def _num_classes(a, variant, samples, names) -> int:
    if a.num_classes:
        return a.num_classes
    if names:
        return len(names)
    if variant is not None and a.recipe == "paper":
        return variant.num_classes
    labels = [s.label for s in samples if s.label is not None]
    if not labels:
        raise ValueError(f"{a.train_list}: no labels; pass --num-classes or a labelled list")
    return max(labels) + 1


def run_train(a) -> int:
    import torch

    from ..data import DataError, VideoDataset, read_samples
    from ..registry import Variant, registry
    from ..transforms import create_transform
    from .data import TrainTransform
    from .engine import TrainConfig, distributed_env, fit
    from .recipes import recipe_for

    reg = registry()
    obj = reg.resolve(a.name)
    variant = obj if isinstance(obj, Variant) else None
    recipe = recipe_for(a.name, a.recipe, dataset=a.dataset)
    if a.no_flip:
        import dataclasses

        recipe = dataclasses.replace(recipe, flip=False)
    if a.threads:
        torch.set_num_threads(a.threads)
    rank, world, _ = distributed_env()
    labels = a.labels or (variant.num_classes if variant and a.recipe == "paper" else None)
    common = dict(root=a.data, labels=labels, template=a.template, skip_bad=a.skip_bad)
    train_samples = read_samples(a.train_list, fmt=a.format, **common)
    val_samples = read_samples(a.val_list, fmt=a.format, **common) if a.val_list else None
    if not train_samples:
        raise DataError(f"{a.train_list}: no usable videos")
    from ..data import resolve_labels

    names = resolve_labels(a.labels)[0] if a.labels else None
    classes = _num_classes(a, variant, train_samples, names)
    frames = a.frames or (variant.frames if variant else 8)
    model, start = build_model(a.name, recipe, num_classes=classes, frames=frames, init=a.init,
                               weights_dir=a.weights_dir, checkpoint=a.checkpoint, seed=a.seed)
    test_tf = create_transform(a.name, crops=1, frames=frames, **({"size": a.size} if a.size else {}))
    size = a.size or test_tf.size
    protocol = test_tf.protocol
    train_tf = TrainTransform(size, resize=test_tf.resize, crop=recipe.crop, scales=recipe.scales,
                              mean=test_tf.mean, std=test_tf.std)
    train_set = VideoDataset(train_samples, frames=frames, protocol=protocol, mode="train", transform=train_tf,
                             template=a.template)
    val_set = (VideoDataset(val_samples, frames=frames, protocol=protocol, mode="1clip", transform=test_tf,
                            template=a.template) if val_samples else None)
    if a.drop_path:
        model.set_drop_path(a.drop_path)
    info = {"trained_on": str(a.train_list), "num_classes": classes, "frames": frames, "input_size": size,
            "init": start}
    if names:
        info["labels"] = list(names)
    cfg = TrainConfig(out=a.out, recipe=recipe, batch=a.batch, epochs=a.epochs, lr=a.lr, amp=a.amp,
                      grad_checkpointing=a.grad_checkpointing, channels_last=a.channels_last, sync_bn=a.sync_bn,
                      freeze_bn=a.freeze_bn,
                      val_every=a.val_every, save_every=a.save_every, seed=a.seed, workers=a.workers,
                      resume=a.resume, name=a.name, model_info=info, quiet=a.quiet, device=a.device)
    if rank == 0 and not a.quiet:
        print(f"zoo train {a.name}: {len(train_samples)} training videos, "
              f"{len(val_samples) if val_samples else 0} validation, {classes} classes, {frames} frames, "
              f"{world} process(es) x batch {a.batch}; start: {start}; recipe {recipe.id}", file=sys.stderr)
    try:
        res = fit(model, train_set, val_set, cfg)
    except RuntimeError as e:  # a DataLoader worker's error arrives wrapped: keep its last line
        if "DataLoader worker" in str(e) or "Caught" in str(e):
            raise DataError(str(e).strip().splitlines()[-1]) from None
        raise
    if rank == 0:
        best = res["best"]
        if best:
            folder = Path(a.out) / "best"
            if variant is not None and classes == variant.num_classes and frames == variant.frames:
                how = f"zoo.create_model({a.name!r}, pretrained=True, weights_dir={str(folder)!r})"
            else:
                how = (f"zoo.create_model({a.name!r}, num_classes={classes}, num_frames={frames}) and load_state_dict("
                       f"safetensors.torch.load_file({str(folder / 'model.safetensors')!r}))")
            print(f"best: epoch {best['epoch']} top1 {best['val_top1']:.2f}% -> {folder} (load: {how})")
        print(json.dumps({"out": res["out"], "best": best}, default=str))
    return 0


def _cmd_train(a) -> int:
    from .engine import distributed_env
    from .recipes import describe_recipe, recipe_for

    if a.show_recipe:
        print(describe_recipe(recipe_for(a.name, a.recipe, dataset=a.dataset)))
        return 0
    _, world, _ = distributed_env()
    if a.nproc and a.nproc > 1 and world == 1:
        from ..launch import relaunch

        return relaunch(a, a._parser, "train")
    missing = [f for f, v in (("--data", a.data), ("--train-list", a.train_list), ("--out", a.out)) if not v]
    if missing:
        raise ValueError(f"zoo train needs {', '.join(missing)} (or --show-recipe)")
    try:
        return run_train(a)
    except OSError as e:
        raise ValueError(str(e)) from None


def add_commands(sub) -> None:
    s = sub.add_parser("train", help="train or fine-tune a network with its paper's recipe (torchrun/DDP)",
                       description="Train NAME on a dataset from ImageNet initialisation with its paper's recipe, or "
                                   "fine-tune its weights to a new label set (--recipe finetune). Run under torchrun "
                                   "(or --nproc N) for several processes/GPUs/machines; --resume continues a killed run.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("name", help="a variant (its dataset's recipe) or an architecture")
    s.add_argument("--data", help="dataset root the lists' paths are relative to")
    s.add_argument("--train-list", help="training annotation file (list, SSv2 JSON, Kinetics CSV, path,label CSV)")
    s.add_argument("--val-list", help="validation annotation file (validated every --val-every epochs)")
    s.add_argument("--format", default="auto", choices=["auto", "list", "ssv2", "k400", "csv"])
    s.add_argument("--labels", help="class names: a label file or a dataset key")
    s.add_argument("--template", help="frame file names in frame directories, e.g. 'img_{:05d}.jpg'")
    s.add_argument("--skip-bad", action="store_true", help="leave out bad list lines instead of failing")
    s.add_argument("--recipe", default="paper", choices=["paper", "finetune"])
    s.add_argument("--dataset", help="the dataset key whose recipe rows apply (default: the variant's)")
    s.add_argument("--show-recipe", action="store_true", help="print the recipe and exit")
    s.add_argument("--init", choices=["imagenet", "pretrained", "none"],
                   help="initialisation (default: the recipe's: imagenet for paper, pretrained for finetune)")
    s.add_argument("--weights-dir", help="folder with the variant's weights for --init pretrained")
    s.add_argument("--checkpoint", help="start from this safetensors state dict (a new head if classes differ)")
    s.add_argument("--num-classes", type=int, help="classes of the new head (default: the variant's, else the labels')")
    s.add_argument("--frames", type=int, help="segments per clip (default: the variant's, else 8)")
    s.add_argument("--size", type=int, help="input size (default: the variant's)")
    s.add_argument("--epochs", type=int, help="default: the recipe's (milestones scale with it)")
    s.add_argument("--lr", type=float, help="default: the recipe's, scaled linearly to the global batch")
    s.add_argument("--batch", type=int, default=8, help="clips per process")
    s.add_argument("--amp", choices=["bf16", "fp16"], help="autocast dtype")
    s.add_argument("--grad-checkpointing", action="store_true", help="recompute activations per stage in backward")
    s.add_argument("--channels-last", action="store_true", help="NHWC weights and activations (GPUs)")
    s.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth rate of the last block")
    s.add_argument("--sync-bn", action="store_true", help="synchronise BatchNorm statistics over processes")
    s.add_argument("--freeze-bn", action="store_true", help="keep every BatchNorm's statistics fixed")
    s.add_argument("--no-flip", action="store_true", help="no horizontal flip (labels that name directions)")
    s.add_argument("--val-every", type=int, default=1, help="validate every K epochs (and after the last)")
    s.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps inside an epoch")
    s.add_argument("--out", help="run folder: last.pt, metrics.csv/json, best/ (a weights_dir)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=4, help="DataLoader decoding processes per rank")
    s.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    s.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda:LOCAL_RANK if available)")
    s.add_argument("--nproc", type=int, default=0, help="launch N processes with torchrun on this machine")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    s.set_defaults(fn=_cmd_train, _parser=s)
