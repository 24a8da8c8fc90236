"""The training loop: one process or many under torchrun (DDP), resumable at any moment.

``fit(model, train_set, val_set, config)`` trains ``model`` on a dataset whose items are
``{"video": (3, T, H, W), "label": int, "id": str, "index": int}`` (``zoo.data.VideoDataset`` in
train mode, or any dataset of that shape; ``index`` keys the sample's flip), validates every ``val_every`` epochs, keeps the best
weights as a ``weights_dir`` folder and a checkpoint ``last.pt`` from which a killed run resumes
exactly (same weights as an uninterrupted run with the same seed).

Distributed: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) selects
DDP, NCCL on GPUs and gloo on CPU. ``batch`` is per process; the global batch is ``batch x
world`` and the lr the recipe's, scaled linearly to it. Every rank is seeded (seed, rank); only
rank 0 writes files. BatchNorm statistics are per process (SyncBN off, as the authors' DDP runs)
unless ``sync_bn=True``.
"""
from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .checkpoint import LAST, CheckpointError, clean_partial, load_checkpoint, rng_state, save_atomic, set_rng_state
from .data import EpochSampler, Seeded, flip_batch, mix_seed
from .distributed import _gather, _setup, distributed_env
from .logs import _Board, _Progress, _write_logs
from .optim import _bn_modes, _freeze_bn_params, _optimizer, lr_factor, param_groups
from .recipes import Recipe

__all__ = ["TrainConfig", "fit", "param_groups", "lr_factor", "distributed_env", "TrainError"]


class TrainError(RuntimeError):
    """A training run that cannot start or continue as asked."""


@dataclass
class TrainConfig:
    out: str
    recipe: Recipe
    batch: int = 8                    # clips per process
    epochs: Optional[int] = None      # default: the recipe's
    lr: Optional[float] = None        # default: the recipe's, scaled to the global batch
    amp: Optional[str] = None         # None | "bf16" | "fp16"
    grad_checkpointing: bool = False
    channels_last: bool = False       # 2D conv weights and activations in NHWC (GPUs with tensor cores)
    sync_bn: bool = False
    freeze_bn: bool = False           # every BN in eval mode (fine-tuning on small data)
    val_every: int = 1
    save_every: int = 0               # also checkpoint every N steps inside an epoch (0: epoch ends only)
    seed: int = 0
    workers: int = 0
    resume: bool = False
    log_every: int = 20
    name: str = ""                    # the registered name the model was built from (export)
    model_info: dict = field(default_factory=dict)   # extra config.json fields (classes, labels, ...)
    export: bool = True
    quiet: bool = False
    device: Optional[str] = None


# -- validation --------------------------------------------------------------------------------

def validate(model: nn.Module, dataset, *, batch: int, device: torch.device, amp: Optional[str],
             rank: int = 0, world: int = 1, workers: int = 0) -> dict:
    """Top-1/top-5/mean-class accuracy over ``dataset`` with ``zoo eval``'s code path
    (:func:`zoo.eval.evaluate`: views' logits averaged, each rank a contiguous shard, every video
    once); every rank gets the metrics."""
    from torch.utils.data import Subset

    from ..eval import evaluate, shard_range

    loader = DataLoader(Subset(dataset, shard_range(len(dataset), rank, world)), batch_size=batch,
                        num_workers=workers, shuffle=False)
    was = model.training
    result = evaluate(model, loader, device=device, amp=amp, world=world)
    model.train(was)
    m = None if result is None else {**result["metrics"], "videos": len(result["ids"])}
    if world > 1:
        box = [m]
        dist.broadcast_object_list(box, src=0)
        m = box[0]
    return m


def _autocast(device: torch.device, amp: Optional[str]):
    if not amp:
        return torch.autocast(device.type, enabled=False)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dtype is None:
        raise TrainError(f"--amp must be bf16 or fp16, got {amp!r}")
    return torch.autocast(device.type, dtype=dtype)


# -- the loop ----------------------------------------------------------------------------------

def _prepare_out(out: Path, resume: bool, rank: int) -> Optional[dict]:
    """The checkpoint to resume from (None for a fresh run); refuses to overwrite a folder the
    zoo did not create or a finished run without --resume."""
    last = out / LAST
    if resume:
        if not last.is_file():
            if out.is_dir() and any(out.iterdir()) and not (out / "metrics.json").is_file():
                raise TrainError(f"--resume: {out} has no {LAST} and holds files this run did not write; "
                                 "pass the --out of the run to resume")
            return None  # nothing saved yet (killed before the first checkpoint): start fresh
        if rank == 0:
            clean_partial(out)
        return load_checkpoint(last)
    if last.is_file():
        raise TrainError(f"{out} already holds a training run ({LAST}); pass --resume to continue it or choose a new --out")
    if out.is_dir() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise TrainError(f"{out} exists and is not empty; zoo train writes only into a new or empty folder")
    return None


def fit(model: nn.Module, train_set, val_set, cfg: TrainConfig,
        on_step: Optional[Callable[[dict], None]] = None) -> dict:
    """Train ``model``; returns {"best": metrics of the best epoch, "history": [...], "out": path}."""
    recipe = cfg.recipe
    if cfg.export and val_set is not None and not cfg.name:
        raise TrainError("TrainConfig.name (the registered name the model was built from) is needed to export "
                         "the best epoch as a weights folder; pass it, or export=False")
    rank, world, device, started = _setup(cfg)
    out = Path(cfg.out)
    finished = False
    try:
        state = _prepare_out(out, cfg.resume, rank)
        if world > 1:
            dist.barrier()
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
        epochs = cfg.epochs or recipe.epochs
        milestones = [m * epochs / recipe.epochs for m in recipe.milestones]
        global_batch = cfg.batch * world
        lr = cfg.lr if cfg.lr is not None else recipe.scaled_lr(global_batch)

        torch.manual_seed(mix_seed(cfg.seed, rank, 1))
        random.seed(mix_seed(cfg.seed, rank, 2))
        if cfg.grad_checkpointing:
            if not hasattr(model, "set_grad_checkpointing"):
                raise TrainError(f"{type(model).__name__} has no set_grad_checkpointing(); gradient checkpointing "
                                 "needs the model API that provides it")
            model.set_grad_checkpointing(True)
        drop = getattr(model, "dropout", None)
        if isinstance(drop, nn.Dropout):   # the recipe's classifier dropout
            drop.p = recipe.dropout
            if hasattr(model, "drop_rate"):
                model.drop_rate = recipe.dropout
        _freeze_bn_params(model, recipe.partial_bn)
        if cfg.sync_bn and world > 1:
            if device.type == "cpu":
                raise TrainError("--sync-bn needs GPUs: torch's SyncBatchNorm has no CPU implementation; on CPU "
                                 "leave it off (per-process statistics) or use --freeze-bn")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        groups = param_groups(model, recipe, lr)
        opt = _optimizer(groups, recipe, lr)

        sampler = EpochSampler(len(train_set), cfg.batch, seed=cfg.seed, rank=rank, world=world)
        steps_per_epoch = sampler.batches()
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda it: lr_factor(it, steps_per_epoch, milestones, recipe.gamma, recipe.warmup_epochs))
        scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
        net = model
        if world > 1:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                static_graph=True)  # the same graph every step; dead layers of the authors' layouts get no grad

        epoch, step, best, history, partial_loss = 0, 0, None, [], None
        if state is not None:
            _check_resume(state, cfg, world, steps_per_epoch)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            epoch, step, best, history = state["epoch"], state["step"], state["best"], list(state["history"])
            partial_loss = (state.get("epoch_loss") or [None] * world)[rank]
            set_rng_state(state["rng"][rank], device)
            if rank == 0 and not cfg.quiet:
                print(f"resuming {out / LAST}: epoch {epoch + 1}, step {step}/{steps_per_epoch}", file=sys.stderr)

        board = _Board(out, rank == 0)
        seeded = Seeded(train_set, cfg.seed)
        swap = recipe.swap_map()

        def save(ep: int, st: int, epoch_loss=None) -> None:
            per_rank = _gather((rng_state(device), epoch_loss), world)   # each rank's RNG and partial loss
            if rank == 0:
                save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": ep, "step": st,
                             "best": best, "history": history, "rng": [r for r, _ in per_rank], "world": world,
                             "batch": cfg.batch, "seed": cfg.seed, "recipe": recipe.as_dict(), "name": cfg.name,
                             "epoch_loss": [e for _, e in per_rank]}, out / LAST)

        while epoch < epochs:
            sampler.set_epoch(epoch, step)
            seeded.set_epoch(epoch)
            # the loader's own generator: creating it must not draw from the global RNG, whose state
            # a resumed run restores for dropout
            loader = DataLoader(seeded, batch_size=cfg.batch, sampler=sampler, num_workers=cfg.workers,
                                pin_memory=device.type == "cuda", drop_last=False,
                                generator=torch.Generator().manual_seed(mix_seed(cfg.seed, epoch, rank, 4)))
            net.train()
            _bn_modes(model, recipe.partial_bn, cfg.freeze_bn)
            bar = _Progress(steps_per_epoch, step, epoch, epochs, rank == 0 and not cfg.quiet, cfg.log_every)
            loss_sum = partial_loss if partial_loss is not None else torch.zeros(2, dtype=torch.float64)
            partial_loss = None
            t0, seen = time.perf_counter(), 0
            for b in loader:
                x = b["video"].to(device, non_blocking=True)
                y = torch.as_tensor(b["label"]).to(device, non_blocking=True)
                keys = [mix_seed(cfg.seed, epoch, int(i), 3) for i in b["index"]]
                x, y = flip_batch(x, y, recipe.flip, swap, keys)
                with _autocast(device, cfg.amp):
                    loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if recipe.clip_grad:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
                scaler.step(opt)
                scaler.update()
                sched.step()
                step += 1
                seen += x.shape[0]
                lv = loss.detach().float().item()
                if not math.isfinite(lv):
                    raise TrainError(f"the loss is {lv} at epoch {epoch + 1} step {step}: lower --lr, or check the "
                                     "inputs (normalised clips) and labels (0..num_classes-1)")
                loss_sum += torch.tensor([lv * x.shape[0], x.shape[0]], dtype=torch.float64)
                bar.update(lv, opt.param_groups[0]["lr"] / opt.param_groups[0]["lr_mult"],
                           seen * world / max(1e-9, time.perf_counter() - t0))
                if on_step is not None:
                    on_step({"epoch": epoch, "step": step, "loss": lv})
                if cfg.save_every and step % cfg.save_every == 0 and step < steps_per_epoch:
                    save(epoch, step, loss_sum)
            bar.close()
            if world > 1:
                dist.all_reduce(loss_sum)
            elapsed = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "train_loss": (loss_sum[0] / loss_sum[1].clamp(min=1)).item(),
                   "lr": opt.param_groups[0]["lr"] / opt.param_groups[0]["lr_mult"],
                   "clips_per_s": seen * world / max(elapsed, 1e-9), "epoch_s": elapsed}
            epoch += 1
            step = 0
            last_epoch = epoch >= epochs
            if val_set is not None and (epoch % cfg.val_every == 0 or last_epoch):
                m = validate(model, val_set, batch=cfg.batch, device=device, amp=cfg.amp, rank=rank, world=world,
                             workers=cfg.workers)
                row.update({f"val_{k}": v for k, v in m.items()})
                if best is None or m["top1"] > best["val_top1"]:
                    best = {"epoch": epoch, **{f"val_{k}": v for k, v in m.items()}}
                    if rank == 0 and cfg.export:
                        from .export import export_weights

                        export_weights(model, out / "best", name=cfg.name, recipe=recipe, metrics=best,
                                       info=cfg.model_info, epochs=epochs)
            history.append(row)
            save(epoch, 0)
            if rank == 0:
                _write_logs(out, history)
                board.add(row)
                if not cfg.quiet:
                    extra = f" val top1 {row['val_top1']:.2f}%" if "val_top1" in row else ""
                    print(f"epoch {epoch}/{epochs}: loss {row['train_loss']:.4f}{extra} "
                          f"({row['clips_per_s']:.1f} clips/s)", file=sys.stderr, flush=True)
        finished = True
        return {"best": best, "history": history, "out": str(out), "model": model}
    finally:
        if started and dist.is_initialized():
            if finished:
                # every rank tears the group down together (the usual remedy: a 2-process gloo run
                # aborted once in CI at the end, rank 1 "terminate called without an active
                # exception", cause not isolated); after an error a barrier could wait forever
                dist.barrier()
            dist.destroy_process_group()


def _check_resume(state: dict, cfg: TrainConfig, world: int, steps_per_epoch: int) -> None:
    for key, now in (("world", world), ("batch", cfg.batch), ("seed", cfg.seed)):
        if state.get(key) != now:
            raise CheckpointError(
                f"the checkpoint was written with {key}={state.get(key)} but this run has {key}={now}; resume with "
                f"the same processes, --batch and --seed (the data order and the sampler position depend on them)")
    if state["step"] > steps_per_epoch:
        raise CheckpointError(f"the checkpoint is at step {state['step']} of an epoch of {steps_per_epoch}: the "
                              "training set changed since it was written")


def config_dict(cfg: TrainConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["recipe"] = cfg.recipe.as_dict()
    return d
