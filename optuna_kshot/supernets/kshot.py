"""K-shot supernets (K-shot NAS, Su et al. 2021): K weight copies of every parameter inside the choices, mixed by
an arch's simplex code.

For every parameter Θ inside a choice (in an OpChoice's candidates, or in an elastic module that reads a
ValueChoice) the supernet keeps K copies Θ¹..Θᴷ; an arch α runs with
W = Σ_k λ_k(α) Θᵏ, where λ(α) lies on the K-simplex and comes from a small MLP, the *simplex-net*, over α's
encoding (one-hot per choice, plus the value of each numeric :class:`~optuna_kshot.ValueChoice` such as a width,
for channel search). K = 1 is the one-shot supernet exactly.

The merge is a :mod:`torch.nn.utils.parametrize` parametrisation on each of those parameters that reads the code
from a :class:`contextvars.ContextVar` set for the duration of one call: merging never reads or writes shared
module state, so several threads can score archs at once, and it is differentiable in the copies and the
simplex-net. Copy 0 is the parameter's own tensor (``...parametrizations.<name>.original``), copies 1..K-1 sit
stacked beside it (``...parametrizations.<name>.0.others``).

Training, through the shared loop: a warm-up with uniform codes trains the copies only; then each step trains the
copies with the simplex-net's codes (no gradient to it), and every ``simplex_every`` steps the simplex-net gets a
turn of its own (a declared :class:`~optuna_kshot.supernets.contract.TrainingPhase`: the batch split into chunks,
one arch each, the copies fixed).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..choices import OpChoice, ValueChoice
from ..defaults import KSHOT_K, SIMPLEX_EVERY
from ..searchspace import Arch, SearchSpace
from ..seeding import seeded
from .contract import SupernetDefaults, TrainingPhase, default_parameter_groups
from .oneshot import OneShotSupernet
from .walk import export_path

__all__ = ["SimplexNet", "KShotSupernet", "code_stats"]

_CODE: contextvars.ContextVar[tuple[torch.Tensor, bool] | None] = contextvars.ContextVar("optuna_kshot_code",
                                                                                           default=None)


@contextlib.contextmanager
def _use_code(code: torch.Tensor, *, detach_copies: bool = False) -> Iterator[None]:
    token = _CODE.set((code, detach_copies))
    try:
        yield
    finally:
        _CODE.reset(token)


class _Mix(nn.Module):
    """Parametrisation W = λ_0 Θ¹ + Σ_{k>0} λ_k Θᵏ⁺¹ with λ from the call's context."""

    def __init__(self, others: torch.Tensor) -> None:
        super().__init__()
        self.others = nn.Parameter(others)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        context = _CODE.get()
        if context is None:
            raise RuntimeError("A K-shot weight was read outside a K-shot call: call the supernet as "
                               "supernet(x, arch) or export the arch's subnet.")
        code, detach = context
        others = self.others
        if detach:
            original, others = original.detach(), others.detach()
        return code[0] * original + torch.tensordot(code[1:], others, dims=1)


class SimplexNet(nn.Module):
    """Arch encoding -> code on the K-simplex: one-hot per choice (plus the numeric value of each numeric
    value choice, for channel search) -> MLP -> softmax(logits / temperature)."""

    def __init__(self, space: SearchSpace, k: int, *, numeric: tuple[str, ...] = (), hidden: int = 64,
                 temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"`temperature` must be positive, but got {temperature!r}.")
        self.space, self.k, self.temperature = space, k, temperature
        self.numeric = tuple(numeric)
        self.mlp = nn.Sequential(nn.Linear(space.encoding_size + len(self.numeric), hidden), nn.ReLU(),
                                 nn.Linear(hidden, k))

    def encode(self, archs: list[Mapping[str, Any]]) -> torch.Tensor:
        rows = [np.concatenate([self.space.one_hot(a), np.array([float(a[w]) for w in self.numeric], np.float32)])
                for a in archs]
        return torch.as_tensor(np.stack(rows), device=self.mlp[0].weight.device)

    def forward(self, archs: list[Mapping[str, Any]]) -> torch.Tensor:
        """Codes of a list of archs, shape (len(archs), K)."""
        return torch.softmax(self.mlp(self.encode(archs)) / self.temperature, dim=-1)


def code_stats(codes: torch.Tensor) -> dict[str, float]:
    """Collapse indicators of a (n_archs, K) batch of codes: mean entropy (log K = uniform, 0 = one-hot) and
    spread (mean over k of the std of λ_k across archs; 0 = every arch has the same code)."""
    codes = codes.detach().double()
    entropy = -(codes * codes.clamp_min(1e-12).log()).sum(1).mean()
    return {"code_entropy": float(entropy), "code_spread": float(codes.std(0).mean()) if len(codes) > 1 else 0.0}


def _choice_parameters(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(full name, owning module, attribute)`` of every parameter inside a choice, once each: in the candidates
    of every :class:`~optuna_kshot.OpChoice`, and in every module that reads a
    :class:`~optuna_kshot.ValueChoice` of its own (an elastic module, e.g. a width-sliced block)."""
    named = list(model.named_modules())
    owner = {id(m): (name, m) for name, m in named}
    roots: list[nn.Module] = []
    for _, m in named:
        if isinstance(m, OpChoice):
            roots.append(m)
        elif any(isinstance(c, ValueChoice) for c in m.children()):
            roots.append(m)
    inside: dict[int, None] = {}
    order = {id(m): i for i, (_, m) in enumerate(named)}
    for root in roots:
        for sub in root.modules():
            inside.setdefault(id(sub))
    out = []
    seen: set[int] = set()
    for key in sorted(inside, key=lambda k: order[k]):
        prefix, module = owner[key]
        for attr, p in module.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                out.append((f"{prefix}.{attr}" if prefix else attr, module, attr))
    return out


def reinitialised(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every submodule's ``reset_parameters()`` called (independent initialisation from
    torch's RNG: seed it around the call)."""
    fresh = copy.deepcopy(model)
    for m in fresh.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset) and not isinstance(m, (OpChoice, ValueChoice)):
            reset()
    return fresh


class KShotSupernet(SupernetDefaults, nn.Module):
    """A K-shot supernet over a one-shot one, called as ``supernet(x, arch)``.

    Args:
        base: the one-shot supernet whose choices get K copies. It is copied: a trained one passed as ``base``
            stays as it is.
        k: copies per parameter (K = 1 is the one-shot supernet).
        trained: ``base`` is trained (weight transfer): copies 1..K-1 start from its weights plus Gaussian noise
            of ``perturb`` times each tensor's std. Otherwise each copy is an independent initialisation from
            ``fresh()`` (a new model of the same structure) or, without it, from ``reset_parameters()``, drawn
            from ``seed``; copies equal to copy 0 (e.g. BN's constant init) are perturbed the same way.
        temperature, hidden: of the simplex-net.
        warmup_fraction: share of the training steps with uniform codes (simplex-net idle).
        simplex_every: a simplex-net turn after every this many supernet steps.
        simplex_chunks: archs per simplex-net turn (the batch is split into this many chunks).
        simplex_lr: Adam learning rate of the simplex-net (cosine-decayed over the training by the loop).
        width_separation: weight of the channel-search regulariser that pushes the codes of different values
            of a numeric value choice apart (cosine similarity penalty); used only when the space has one.
    """

    kind = "kshot"

    def __init__(
        self,
        base: OneShotSupernet,
        k: int = KSHOT_K,
        *,
        trained: bool = False,
        fresh: Callable[[], nn.Module] | None = None,
        seed: int | None = 0,
        perturb: float = 0.1,
        temperature: float = 1.0,
        hidden: int = 64,
        warmup_fraction: float = 0.25,
        simplex_every: int = SIMPLEX_EVERY,
        simplex_chunks: int = 4,
        simplex_lr: float = 3e-3,
        width_separation: float = 0.1,
    ) -> None:
        super().__init__()
        if not isinstance(base, OneShotSupernet):
            raise TypeError(f"`base` must be a OneShotSupernet, but got {type(base).__name__}.")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"`k` must be a positive int, but got {k!r}.")
        if not 0 <= warmup_fraction <= 1:
            raise ValueError(f"`warmup_fraction` must be in [0, 1], but got {warmup_fraction!r}.")
        for name, value in (("simplex_every", simplex_every), ("simplex_chunks", simplex_chunks)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, but got {value!r}.")
        if not simplex_lr > 0:
            raise ValueError(f"`simplex_lr` must be positive, but got {simplex_lr!r}.")
        self.base = copy.deepcopy(base)
        self.space = self.base.space
        self.k = k
        self.options = {
            "k": k, "temperature": temperature, "hidden": hidden, "warmup_fraction": warmup_fraction,
            "simplex_every": simplex_every, "simplex_chunks": simplex_chunks, "simplex_lr": simplex_lr,
            "width_separation": width_separation,
        }
        model = self.base.model
        targets = _choice_parameters(model)
        if k > 1:
            extras: list[list[torch.Tensor]] = [[] for _ in targets]
            with seeded(seed):
                for _ in range(k - 1):  # one copy at a time: its source model, then its perturbations
                    source = {} if trained else dict(
                        (fresh() if fresh is not None else reinitialised(model)).named_parameters())
                    for (name, module, attr), extra in zip(targets, extras):
                        p = getattr(module, attr).detach()
                        q = source.get(name)
                        q = q.detach().to(p.device, p.dtype) if q is not None and q.shape == p.shape else p
                        if torch.equal(q, p):
                            scale = max(float(p.std()) if p.numel() > 1 else 0.0, float(p.abs().mean()), 0.01)
                            q = p + perturb * scale * torch.randn_like(p)
                        extra.append(q.clone())
            for (_, module, attr), extra in zip(targets, extras):
                parametrize.register_parametrization(module, attr, _Mix(torch.stack(extra)), unsafe=True)
        numeric = tuple(c.name for c in self.space.choices
                        if c.options and all(isinstance(o, (int, float)) and not isinstance(o, bool)
                                             for o in c.options) and _is_value_choice(model, c.name))
        with seeded(None if seed is None else seed + 7919):
            self.simplex = SimplexNet(self.space, k, numeric=numeric, hidden=hidden, temperature=temperature)
        self.register_buffer("warming_up", torch.tensor(True))
        probe_rng = np.random.default_rng(0)
        self._probe = [self.space.sample(probe_rng) for _ in range(64)]

    # ------------------------------------------------------------------------------------------ merging
    def code(self, arch: Mapping[str, Any]) -> torch.Tensor:
        """The simplex code λ(arch), shape (K,) (differentiable in the simplex-net)."""
        return self.simplex([self.space.validate(arch)])[0]

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any], code: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of ``arch`` with its code (uniform during the warm-up while training; the simplex-net's,
        without gradient to it, otherwise)."""
        arch = self.space.validate(arch)
        if self.k == 1:
            return self.base.run(x, arch)
        with _use_code(self._code_for(arch) if code is None else code):
            return self.base.run(x, arch)

    def _code_for(self, arch: Arch) -> torch.Tensor:
        """The code a forward uses: uniform while training in the warm-up, else the simplex-net's (no gradient)."""
        if self.training and bool(self.warming_up):
            return torch.full((self.k,), 1.0 / self.k, device=self.warming_up.device)
        with torch.no_grad():
            return self.simplex([arch])[0]

    @torch.no_grad()
    def export(self, arch: Mapping[str, Any], *, deploy: bool = False, share_weights: bool = False) -> nn.Module:
        """The arch's plain subnet with the copies merged into one weight set (as small as a one-shot one), with the
        code a forward uses (the simplex-net's; uniform while training in the warm-up); ``deploy`` drops
        stabilizers."""
        arch = self.space.validate(arch)
        if self.k == 1:
            return self.base.export(arch, deploy=deploy, share_weights=share_weights)
        from ..choices import use_arch

        with _use_code(self._code_for(arch)), use_arch(arch):
            return export_path(self.base.model, arch, deploy=deploy, share_weights=share_weights)

    def example_input(self) -> torch.Tensor | None:
        return self.base.example_input()

    def describe_arch(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """What a trial stores about the arch: its K-shot code."""
        with torch.no_grad():
            return {"kshot_code": [round(float(v), 6) for v in self.code(arch)]}

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "options": {**self.options, **self.base.config()["options"]}}

    # ----------------------------------------------------------------------------------------- training
    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The loop's optimiser trains the copies and the shared layers, not the simplex-net (its own phase).
        Stacked copies decay exactly as copy 0 does (by the dims of one copy)."""
        ndim = {}
        for module in self.base.modules():
            if parametrize.is_parametrized(module):
                for plist in module.parametrizations.values():
                    ndim[id(plist[0].others)] = plist.original.ndim
        return default_parameter_groups(list(self.base.parameters()), weight_decay, ndim)

    def phases(self) -> list[TrainingPhase]:
        if self.k == 1:
            return []
        return [TrainingPhase("simplex", list(self.simplex.parameters()), self._simplex_loss,
                              lr=self.options["simplex_lr"], every=self.options["simplex_every"],
                              start_fraction=self.options["warmup_fraction"])]

    def on_step(self, step: int, total_steps: int) -> None:
        first = max(0, int(np.ceil(self.options["warmup_fraction"] * total_steps)))
        self.warming_up.fill_(step < first)

    def training_stats(self) -> dict[str, float]:
        """Collapse indicators of the codes of 64 fixed archs (logged per epoch)."""
        with torch.no_grad():
            return code_stats(self.simplex(self._probe))

    def _simplex_loss(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        chunks = min(self.options["simplex_chunks"], len(x))
        archs = [self.space.sample(rng) for _ in range(chunks)]
        codes = self.simplex(archs)
        loss = x.new_zeros(())
        for arch, code, xs, ys in zip(archs, codes, x.chunk(chunks), y.chunk(chunks)):
            with _use_code(code, detach_copies=True):
                logits = self.base.run(xs, arch)
            loss = loss + nn.functional.cross_entropy(logits, ys) / chunks
        return loss + self.options["width_separation"] * self._width_similarity(archs, codes, rng)

    def _width_similarity(self, archs: list[Arch], codes: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Mean cosine similarity between the code of an arch and that of the same arch with one numeric value
        choice changed (channel search regulariser; 0 without such choices)."""
        widths = [self.space[n] for n in self.simplex.numeric if len(self.space[n].options) > 1]
        if not widths or self.options["width_separation"] == 0:
            return codes.sum() * 0.0
        variants = []
        for arch in archs:
            choice = widths[int(rng.integers(len(widths)))]
            others = [o for o in choice.options if o != arch[choice.name]]
            variants.append({**arch, choice.name: others[int(rng.integers(len(others)))]})
        return nn.functional.cosine_similarity(codes, self.simplex(variants), dim=1).mean()


def _is_value_choice(model: nn.Module, name: str) -> bool:
    return any(isinstance(m, ValueChoice) and m.choice_name == name for m in model.modules())
