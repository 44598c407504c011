"""One training loop for every supernet kind (and for stand-alone subnets).

What differs between kinds is passed in: the path sampler decides which archs a step trains on its batch, and the
supernet contract (:class:`~optuna_kshot.supernets.contract.Supernet`) says which parameters the optimiser trains
and with which weight decay, and which extra phases run (K-shot's simplex-net turn).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .devices import resolve_device
from .monitor import RankingMonitor
from .paths import PathSampler
from .supernets.contract import SupernetDefaults, TrainingPhase

__all__ = [
    "TrainConfig", "TrainResult", "EpochRecord", "TrainingDiverged", "train_supernet", "resolve_device",
    "sync_gradients", "init_distributed_from_env", "close_distributed", "images_per_run",
]

_logger = logging.getLogger(__name__)


def _world() -> tuple[int, int]:
    """(rank, world size) of the running torch.distributed group, or (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sync_gradients(params: Sequence[torch.Tensor] | Any) -> None:
    """Average the gradients of ``params`` over the torch.distributed group (no-op without one). Every rank
    trains the same paths (same seed), so the same parameters have gradients on every rank."""
    import torch.distributed as dist

    rank, world = _world()
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def init_distributed_from_env(device: str | torch.device | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1): gloo on CPU,
    NCCL on CUDA. Returns (rank, world size); (0, 1) when not launched by torchrun."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if resolve_device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return _world()


def close_distributed() -> None:
    """Leave the process group that :func:`init_distributed_from_env` joined (nothing when none was joined). Call
    it on every rank before the process ends: a gloo group still alive at interpreter exit can abort the process
    ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class TrainConfig:
    """Training budget and optimiser settings (SGD with Nesterov momentum, cosine schedule per step).

    The budget is ``epochs`` passes over the training split, or, when ``budget_images`` is set, that many
    training images seen (every path of a multi-path step counts), which is how supernet kinds are compared.
    ``warmup`` is the share of the steps over which the learning rate rises linearly before the cosine decay
    (0: none).
    """

    epochs: int = 5
    budget_images: int | None = None
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    grad_clip: float | None = 5.0
    seed: int = 0
    checkpoint_every_steps: int | None = None
    warmup: float = 0.0

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, but got {value!r}.")

        positive_int("epochs", self.epochs)
        positive_int("budget_images", self.budget_images, True)
        positive_int("batch_size", self.batch_size)
        positive_int("checkpoint_every_steps", self.checkpoint_every_steps, True)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"`lr` must be a positive finite number, but got {self.lr!r}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1), but got {self.momentum!r}.")
        if self.weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0, but got {self.weight_decay!r}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"`label_smoothing` must be in [0, 1), but got {self.label_smoothing!r}.")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"`grad_clip` must be positive or None, but got {self.grad_clip!r}.")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"`warmup` (the share of steps with a linear learning-rate warm-up) must be in [0, 1), "
                             f"but got {self.warmup!r}.")


@dataclass
class EpochRecord:
    epoch: int
    step: int
    images: int
    loss: float
    accuracy: float
    lr: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    history: list[EpochRecord]
    steps: int
    images: int
    seconds: float
    stopped_early: bool = False
    """The ranking monitor's stop rule ended the training before the budget."""
    start_step: int = 0
    """The step this call started at: > 0 when it resumed a checkpoint, == ``steps`` when nothing was left."""


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class _Plain(SupernetDefaults, nn.Module):
    """A plain model (``model(x)``) behind the supernet contract, so stand-alone training runs the same loop."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, arch: Any = None) -> torch.Tensor:
        return self.model(x)


def _trainable(model: nn.Module) -> Any:
    """``model`` itself when it implements the supernet contract's training methods, else a plain-model adapter."""
    from .supernets.contract import Trainable

    if isinstance(model, Trainable):
        return model
    return _Plain(model)


def _optimizer(groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    groups = [{**g, "weight_decay": config.weight_decay if g["weight_decay"] else 0.0} for g in groups if g["params"]]
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0)


def images_per_run(total_steps: int, batch_size: int, paths_per_step: int, phases: Sequence[TrainingPhase]) -> int:
    """Training images a run of ``total_steps`` steps forwards: every path of every step, plus one batch per turn
    of every extra phase (e.g. the K-shot simplex-net's)."""
    return total_steps * batch_size * paths_per_step + sum(p.turns(total_steps) for p in phases) * batch_size


def _plan(data: Any, config: TrainConfig, paths_per_step: int, phases: Sequence[TrainingPhase]) -> tuple[int, int]:
    steps_per_epoch = data.num_batches(config.batch_size, drop_last=True)
    if steps_per_epoch == 0:
        raise ValueError(
            f"The training split has {len(data)} images, fewer than one batch of {config.batch_size}."
        )
    if config.budget_images is None:
        return steps_per_epoch, config.epochs * steps_per_epoch
    low, high = 1, max(1, math.ceil(config.budget_images / (config.batch_size * paths_per_step)))
    while low < high:  # the fewest steps whose images reach the budget
        mid = (low + high) // 2
        if images_per_run(mid, config.batch_size, paths_per_step, phases) >= config.budget_images:
            high = mid
        else:
            low = mid + 1
    return steps_per_epoch, low


def train_supernet(
    model: nn.Module,
    data: Any,
    config: TrainConfig = TrainConfig(),
    *,
    sampler: PathSampler,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    callbacks: Sequence[Callable[[EpochRecord, nn.Module], None]] = (),
    metadata: Mapping[str, Any] | None = None,
    monitor: RankingMonitor | None = None,
) -> TrainResult:
    """Train ``model`` (a supernet, called as ``model(x, arch)``, or a plain model) on the archs ``sampler`` picks.

    Each step samples its archs, runs each on the same batch, accumulates gradients and steps once. Parameters
    of ops off the step's paths have no gradient, so SGD gives them no weight-decay or momentum update. Then each
    extra phase the supernet declares (K-shot's simplex-net) gets its turn when due, with its own optimiser.

    Budget: ``config.epochs`` passes over the data, or ``config.budget_images`` training images, counting every
    forward that trains something: each path of a multi-path step (FairNAS, few-shot balanced sampling) and each
    turn of an extra phase (one batch each).

    Args:
        data: the training split: an :class:`~optuna_kshot.data.ArrayDataset`, any map-style torch ``Dataset``
            of ``(input, label)`` pairs, or a ``DataLoader`` (its dataset, workers and collate function).
        checkpoint: file written (atomically) after every epoch, and every ``config.checkpoint_every_steps``.
            When it exists and ``resume`` is true, training continues from it and ends with the same weights as
            an uninterrupted run with the same seed.
        callbacks: called after every epoch with the epoch's record and the model (e.g. dashboard plots).
        metadata: stored in the checkpoint (space config, supernet kind and options); a checkpoint whose
            metadata differs is refused on resume.
        monitor: a :class:`~optuna_kshot.monitor.RankingMonitor` that scores its probe archs after epochs (its
            taus go on the epoch records, its history into the checkpoint) and may stop the training early once
            the probe ranking is stable.

    Distributed (``torchrun``, after :func:`init_distributed_from_env`): every rank samples the same paths from
    the shared seed, takes its own slice of each batch (``batch_size`` is the global batch), gradients are
    averaged over ranks, and only rank 0 writes checkpoints.

    Raises:
        TrainingDiverged: the loss became NaN/inf; the last checkpoint written before is kept.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig, but got {type(config).__name__}.")
    from .loaders import as_split, on_device

    data = as_split(data)
    device = resolve_device(device)
    model.to(device)
    data = on_device(data, device)
    net = _trainable(model)
    phases = list(net.phases())
    paths_per_step = len(sampler.sample(np.random.default_rng(0)))
    distill = bool(getattr(sampler, "distill", False)) and paths_per_step > 1
    steps_per_epoch, total_steps = _plan(data, config, paths_per_step, phases)
    groups = net.parameter_groups(config.weight_decay)
    params = [p for g in groups for p in g["params"]]
    optimizer = _optimizer(groups, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total_steps, config.warmup))
    phase_optimizers = {ph.name: torch.optim.Adam(ph.params, lr=ph.lr) for ph in phases}
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    rng = np.random.default_rng(config.seed)
    metadata = dict(metadata or {})
    history: list[EpochRecord] = []
    step = images = 0
    elapsed = 0.0
    stopped = False

    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, space_config=metadata.get("space"), map_location=device)
        stored = {k: state.get(k) for k in metadata if k != "space"}
        if stored != {k: v for k, v in metadata.items() if k != "space"} or state.get("config") != asdict(config):
            raise CheckpointError(
                f"Checkpoint {str(ckpt_path)!r} belongs to another run (its settings differ from this one's); "
                "pass another checkpoint path or resume=False to start over."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        for name, opt in phase_optimizers.items():
            if name in state.get("phases", {}):
                opt.load_state_dict(state["phases"][name])
        rng.bit_generator.state = state["rng"]
        step, images, elapsed = state["step"], state["images"], state["seconds"]
        history = [EpochRecord(**r) for r in state["history"]]
        stopped = bool(state.get("stopped_early", False))
        if monitor is not None and "monitor" in state:
            monitor.load_state_dict(state["monitor"])
        _logger.info("Resumed from %s at step %d of %d.", ckpt_path, step, total_steps)

    start_step = step
    rank, world = _world()
    if config.batch_size % world:
        raise ValueError(f"`batch_size` {config.batch_size} must be divisible by the {world} distributed ranks.")

    def write_checkpoint() -> None:
        if ckpt_path is None or rank != 0:
            return
        save_checkpoint(ckpt_path, {
            **metadata, "config": asdict(config), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "phases": {n: o.state_dict() for n, o in phase_optimizers.items()},
            "rng": rng.bit_generator.state, "step": step, "images": images, "seconds": elapsed,
            "history": [asdict(r) for r in history], "complete": step >= total_steps or stopped,
            "stopped_early": stopped, **({"monitor": monitor.state_dict()} if monitor is not None else {}),
        })

    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=not progress or rank != 0, desc="training", unit="step",
               leave=False)
    per_group = net.n_groups > 1  # few-shot: per-sub-supernet losses are logged per epoch
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    try:
        for epoch in range(step // steps_per_epoch, n_epochs):
            if stopped:
                break
            model.train()
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            seen = 0
            group_loss: dict[int, list[torch.Tensor]] = {}
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            batches = data.batches(config.batch_size, shuffle=True, generator=generator, device=device,
                                   drop_last=True, start=step - epoch * steps_per_epoch)
            for x, y in batches:
                if step >= total_steps:
                    break
                if world > 1:  # this rank's slice of the global batch
                    x, y = x.chunk(world)[rank], y.chunk(world)[rank]
                net.on_step(step, total_steps)
                archs = sampler.sample(rng)
                optimizer.zero_grad(set_to_none=True)
                teacher = None
                for i, arch in enumerate(archs):
                    logits = net(x, arch)
                    # in-place distillation (BigNAS): the sampler's first path learns from the labels, the others
                    # from its predictions
                    loss = criterion(logits, y) if teacher is None else _soft_cross_entropy(logits, teacher)
                    if distill and i == 0:
                        teacher = logits.detach().softmax(1)
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(
                            f"The training loss became {loss.item()} at step {step} (epoch {epoch}); "
                            + (f"the last good checkpoint {str(ckpt_path)!r} is kept; " if ckpt_path else "")
                            + "lower the learning rate or enable gradient clipping."
                        )
                    loss.backward()
                    loss_sum += loss.detach() * len(y)
                    if per_group:
                        group_loss.setdefault(net.group(arch), []).append(loss.detach())
                    correct += (logits.detach().argmax(1) == y).sum()
                    seen += len(y)
                sync_gradients(params)
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                scheduler.step()
                turns = 0
                for phase in phases:
                    if phase.active(step, total_steps):
                        _phase_turn(phase, phase_optimizers[phase.name], x, y, rng, step, total_steps)
                        turns += 1
                step += 1
                images += len(y) * (len(archs) + turns) * world
                bar.update(1)
                if config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
                    now = time.perf_counter()
                    elapsed, start = elapsed + now - start, now
                    write_checkpoint()
            elapsed += time.perf_counter() - start
            extra = dict(net.training_stats())
            extra.update({f"loss_group{g}": float(torch.stack(v).mean()) for g, v in sorted(group_loss.items())})
            if monitor is not None and monitor.due(epoch, n_epochs - 1):
                extra.update(monitor.check(model, epoch, images).extra())
                stopped = monitor.should_stop and step < total_steps
            record = EpochRecord(
                epoch=epoch, step=step, images=images, loss=float(loss_sum) / max(seen, 1),
                accuracy=float(correct) / max(seen, 1), lr=float(scheduler.get_last_lr()[0]),
                seconds=round(elapsed, 3), extra=extra,
            )
            history.append(record)
            _logger.info(
                "epoch %d: loss %.4f, train accuracy %.4f, lr %.4g, %d images, %.1f s",
                epoch, record.loss, record.accuracy, record.lr, images, elapsed,
            )
            shown = {"loss": f"{record.loss:.3f}", "acc": f"{record.accuracy:.3f}"}
            if "probe_tau_prev" in extra:
                shown["rank_tau"] = f"{extra['probe_tau_prev']:.2f}"
            bar.set_postfix(shown)
            write_checkpoint()
            for callback in callbacks:
                callback(record, model)
    finally:
        bar.close()
    if stopped:
        _logger.info("Stopped at step %d of %d: the probe ranking was stable.", step, total_steps)
    return TrainResult(history=history, steps=step, images=images, seconds=elapsed, stopped_early=stopped,
                       start_step=start_step)


def _schedule(total_steps: int, warmup: float) -> Any:
    """Learning-rate factor per step: linear warm-up over the first ``warmup`` share of the steps, then cosine
    decay to 0 at ``total_steps``."""
    warm = int(round(warmup * total_steps))

    def factor(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(s - warm, total_steps - warm) / max(total_steps - warm, 1)))

    return factor


def _soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a teacher's probabilities (in-place distillation)."""
    return -(target * logits.log_softmax(1)).sum(1).mean()


def _phase_turn(phase: TrainingPhase, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                rng: np.random.Generator, step: int, total_steps: int) -> None:
    """One turn of an extra phase: its loss on the batch, gradients for its parameters only, one cosine-scheduled
    step of its optimiser."""
    for group in optimizer.param_groups:
        group["lr"] = 0.5 * phase.lr * (1 + math.cos(math.pi * step / total_steps))
    loss = phase.loss(x, y, rng)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"The {phase.name} phase's loss became {loss.item()} at step {step}.")
    grads = torch.autograd.grad(loss, phase.params, allow_unused=True)
    for p, g in zip(phase.params, grads):
        p.grad = g
    sync_gradients(phase.params)
    optimizer.step()
    for p in phase.params:
        p.grad = None
