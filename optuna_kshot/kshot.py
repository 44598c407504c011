"""K-shot supernets (K-shot NAS, Su et al. 2021): K weight copies per op, mixed by an arch's simplex code.

For every (layer, op) the supernet keeps K weight tensors Θ¹..Θᴷ; an arch α runs with W = Σ_k λ_k(α) Θᵏ, where
λ(α) lies on the K-simplex and comes from a small MLP, the *simplex-net*, over α's encoding. K = 1 is the
one-shot supernet exactly. Training, through the shared loop: a warm-up with uniform codes trains the copies only;
then each step trains the copies with the simplex-net's codes (no gradient to it), and every
``simplex_every`` steps the simplex-net gets a step of its own (the batch split into chunks, one arch each, the
copies fixed), with its own optimiser and cosine schedule.

Copy 0 of every op is the wrapped one-shot network's own weight, so a K-shot supernet can start from a trained
one-shot checkpoint; the other copies start from independent initialisations (or, from a trained one-shot
supernet, from its weights plus noise) so that they can diverge.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .nn import build_supernet, seeded
from .space import SearchSpace
from .training import sync_gradients

__all__ = ["SimplexNet", "KShotSupernet", "code_stats"]


class SimplexNet(nn.Module):
    """Arch encoding -> code on the K-simplex: one-hot per choice (plus the numeric width of each width
    choice, for channel search) -> MLP -> softmax(logits / temperature)."""

    def __init__(self, space: SearchSpace, k: int, *, hidden: int = 64, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"`temperature` must be positive, but got {temperature!r}.")
        self.space, self.k, self.temperature = space, k, temperature
        self._widths = [c.name for c in space.choices if c.name.startswith("width")]
        self.mlp = nn.Sequential(
            nn.Linear(space.encoding_size + len(self._widths), hidden), nn.ReLU(), nn.Linear(hidden, k)
        )

    def encode(self, archs: list[Mapping[str, Any]]) -> torch.Tensor:
        rows = [np.concatenate([self.space.one_hot(a), np.array([float(a[w]) for w in self._widths], np.float32)])
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


class KShotSupernet(nn.Module):
    """A K-shot supernet over a built-in space, called as ``supernet(x, arch)``.

    Args:
        space: the search space.
        k: copies per op (K = 1 is the one-shot supernet).
        base: a (trained) one-shot supernet to start from; its op weights become copy 0 and the other copies
            start from them plus Gaussian noise of ``perturb`` times each tensor's std. Without it, every copy
            is an independent initialisation from ``seed``.
        temperature, hidden: of the simplex-net.
        warmup_fraction: share of the training steps with uniform codes (simplex-net idle).
        simplex_every: a simplex-net step after every this many supernet steps.
        simplex_chunks: archs per simplex-net step (the batch is split into this many chunks).
        simplex_lr: Adam learning rate of the simplex-net (cosine-decayed over the training).
        width_separation: weight of the channel-search regulariser that pushes the codes of different widths
            of a layer apart (cosine similarity penalty); used only when the space has width choices.
    """

    def __init__(
        self,
        space: SearchSpace,
        k: int = 4,
        *,
        base: nn.Module | None = None,
        seed: int | None = 0,
        perturb: float = 0.1,
        temperature: float = 1.0,
        hidden: int = 64,
        warmup_fraction: float = 0.25,
        simplex_every: int = 1,
        simplex_chunks: int = 4,
        simplex_lr: float = 3e-3,
        width_separation: float = 0.1,
        stabilizer: bool = False,
        force_stabilizer: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"`k` must be a positive int, but got {k!r}.")
        if not 0 <= warmup_fraction <= 1:
            raise ValueError(f"`warmup_fraction` must be in [0, 1], but got {warmup_fraction!r}.")
        if simplex_every < 1 or simplex_chunks < 1:
            raise ValueError(
                f"`simplex_every` and `simplex_chunks` must be >= 1, but got {simplex_every}, {simplex_chunks}."
            )
        self.space, self.k = space, k
        self.options = {
            "k": k, "temperature": temperature, "hidden": hidden, "warmup_fraction": warmup_fraction,
            "simplex_every": simplex_every, "simplex_chunks": simplex_chunks, "simplex_lr": simplex_lr,
            "width_separation": width_separation,
        }
        stab = {"stabilizer": stabilizer, "force_stabilizer": force_stabilizer}
        self.base = base if base is not None else build_supernet(space, seed=seed, **stab)
        named = dict(self.base.named_parameters())
        self._op_names = [n for n in named if any(n.startswith(p) for p in self.base.op_prefixes())]
        self.copies = nn.ParameterDict()
        if k > 1:
            with seeded(seed):
                for j in range(1, k):
                    fresh = None if base is not None else dict(build_supernet(space, **stab).named_parameters())
                    for name in self._op_names:
                        p = named[name].detach()
                        extra = fresh[name].detach().clone() if fresh is not None else p
                        if torch.equal(extra, p):  # e.g. BN's constant init: perturb so the copies can diverge
                            scale = max(float(p.std()) if p.numel() > 1 else 0.0, float(p.abs().mean()), 0.01)
                            extra = p + perturb * scale * torch.randn_like(p)
                        key = self._key(name)
                        if j == 1:
                            self.copies[key] = nn.Parameter(torch.empty((k - 1, *p.shape), dtype=p.dtype))
                        self.copies[key].data[j - 1].copy_(extra)
        with seeded(None if seed is None else seed + 7919):
            self.simplex = SimplexNet(space, k, hidden=hidden, temperature=temperature)
        self._simplex_opt: torch.optim.Optimizer | None = None
        self._simplex_state: dict[str, Any] | None = None
        self.register_buffer("warming_up", torch.tensor(True))
        self._export_lock = threading.Lock()
        sample_rng = np.random.default_rng(0)
        self._probe = [space.sample(sample_rng) for _ in range(64)]

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    # ------------------------------------------------------------------------------------------ merging
    def code(self, arch: Mapping[str, Any]) -> torch.Tensor:
        """The simplex code λ(arch), shape (K,) (differentiable in the simplex-net)."""
        return self.simplex([self.space.validate(arch)])[0]

    def merged(self, arch: Mapping[str, Any], code: torch.Tensor, *, detach_copies: bool = False) -> dict[str, Any]:
        """Merged weights W = Σ_k λ_k Θᵏ of the ops on ``arch``'s path (once per forward)."""
        if self.k == 1:
            return {}
        named = dict(self.base.named_parameters())
        prefixes = self.base.op_prefixes(arch)
        out = {}
        for name in self._op_names:
            if any(name.startswith(p) for p in prefixes):
                first, rest = named[name], self.copies[self._key(name)]
                if detach_copies:
                    first, rest = first.detach(), rest.detach()
                out[name] = code[0] * first + torch.tensordot(code[1:], rest, dims=1)
        return out

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any], code: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of ``arch`` with its code (uniform during the warm-up while training; the simplex-net's,
        without gradient to it, otherwise)."""
        arch = self.space.validate(arch)
        if code is None:
            if self.training and bool(self.warming_up):
                code = torch.full((self.k,), 1.0 / self.k, device=x.device)
            else:
                with torch.no_grad():
                    code = self.code(arch)
        return functional_call(self.base, self.merged(arch, code), (x, arch), strict=False)

    @torch.no_grad()
    def export(self, arch: Mapping[str, Any], *, deploy: bool = False) -> nn.Module:
        """The arch's plain subnet with the copies merged into one weight set (as small as a one-shot one);
        ``deploy`` drops stabilizers (see the one-shot network's ``export``)."""
        arch = self.space.validate(arch)
        merged = self.merged(arch, self.code(arch))
        with self._export_lock:  # functional_call swaps tensors on self.base for the duration of the call
            return functional_call(_Exporter(self.base), {f"net.{k}": v for k, v in merged.items()}, (arch,),
                                   {"deploy": deploy}, strict=False)

    def describe_arch(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """What a trial stores about the arch: its K-shot code."""
        with torch.no_grad():
            return {"kshot_code": [round(float(v), 6) for v in self.code(arch)]}

    # ----------------------------------------------------------------------------------------- training
    def parameters_to_train(self) -> list[nn.Parameter]:
        """What the shared loop's optimiser trains: the copies and shared layers, not the simplex-net."""
        return [*self.base.parameters(), *self.copies.parameters()]

    def _simplex_optimizer(self) -> torch.optim.Optimizer:
        if self._simplex_opt is None:
            self._simplex_opt = torch.optim.Adam(self.simplex.parameters(), lr=self.options["simplex_lr"])
            if self._simplex_state is not None:
                self._simplex_opt.load_state_dict(self._simplex_state)
        return self._simplex_opt

    def auxiliary_step(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, *, step: int,
                       total_steps: int) -> dict[str, float]:
        """Called by the training loop after each supernet step: ends the warm-up, runs the simplex-net's
        step when due, and returns the code statistics logged per epoch."""
        warm = step + 1 < math.ceil(self.options["warmup_fraction"] * total_steps)
        self.warming_up.fill_(warm)
        if not warm and self.k > 1 and (step + 1) % self.options["simplex_every"] == 0:
            opt = self._simplex_optimizer()
            for group in opt.param_groups:
                group["lr"] = 0.5 * self.options["simplex_lr"] * (1 + math.cos(math.pi * step / total_steps))
            chunks = min(self.options["simplex_chunks"], len(x))
            archs = [self.space.sample(rng) for _ in range(chunks)]
            opt.zero_grad(set_to_none=True)
            codes = self.simplex(archs)
            loss = 0.0
            for arch, code, xs, ys in zip(archs, codes, x.chunk(chunks), y.chunk(chunks)):
                logits = functional_call(self.base, self.merged(arch, code, detach_copies=True), (xs, arch),
                                         strict=False)
                loss = loss + nn.functional.cross_entropy(logits, ys) / chunks
            loss = loss + self.options["width_separation"] * self._width_similarity(archs, codes, rng)
            loss.backward()
            sync_gradients(self.simplex.parameters())
            opt.step()
            for p in self.parameters_to_train():  # the copies were detached; make sure nothing leaks
                p.grad = None
        with torch.no_grad():
            return code_stats(self.simplex(self._probe))

    def _width_similarity(self, archs: list[dict[str, Any]], codes: torch.Tensor,
                          rng: np.random.Generator) -> torch.Tensor:
        """Mean cosine similarity between the code of an arch and that of the same arch with one layer's
        width changed (channel search regulariser; 0 without width choices)."""
        widths = [c for c in self.space.choices if c.name.startswith("width") and len(c.options) > 1]
        if not widths or self.options["width_separation"] == 0:
            return codes.sum() * 0.0
        variants = []
        for arch in archs:
            choice = widths[int(rng.integers(len(widths)))]
            others = [o for o in choice.options if o != arch[choice.name]]
            variants.append({**arch, choice.name: others[int(rng.integers(len(others)))]})
        return nn.functional.cosine_similarity(codes, self.simplex(variants), dim=1).mean()

    def get_extra_state(self) -> Any:
        opt = self._simplex_opt
        return {"simplex_optimizer": self._simplex_state if opt is None else opt.state_dict()}

    def set_extra_state(self, state: Any) -> None:
        self._simplex_opt = None
        self._simplex_state = (state or {}).get("simplex_optimizer")


class _Exporter(nn.Module):
    """Runs ``net.export(arch)`` as a forward, so that ``functional_call`` can export with merged weights."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, arch: Mapping[str, Any], deploy: bool = False) -> nn.Module:
        return self.net.export(arch, deploy=deploy)
