"""DDP supernet training (torchrun, gloo on CPU) against single-process training on the combined batch."""

import copy
import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ddp_worker import tiny_setup  # noqa: E402

import optuna_kshot as ok  # noqa: E402

pytestmark = pytest.mark.slow


class GhostBatch(torch.nn.Module):
    """Single-process run on the combined batch whose BN sees each rank's half separately, as DDP's ranks do; an
    extra phase (the K-shot simplex-net's turn) runs on each half with the same archs, and its loss is the mean of
    the halves', as the ranks' averaged gradients are."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.n_groups = inner.n_groups

    def forward(self, x, arch):
        return torch.cat([self.inner(part, arch) for part in x.chunk(2)])

    def parameter_groups(self, weight_decay):
        return self.inner.parameter_groups(weight_decay)

    def on_step(self, step, total_steps):
        self.inner.on_step(step, total_steps)

    def group(self, arch):
        return self.inner.group(arch)

    def training_stats(self):
        return self.inner.training_stats()

    def phases(self):
        def halves(phase):
            def loss(x, y, rng):
                twin = copy.deepcopy(rng)  # both halves draw the same archs, as both ranks do
                (x0, x1), (y0, y1) = x.chunk(2), y.chunk(2)
                first = phase.loss(x0, y0, rng)
                return (first + phase.loss(x1, y1, twin)) / 2

            return dataclasses.replace(phase, loss=loss)

        return [halves(p) for p in self.inner.phases()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["oneshot", "kshot", "fewshot"])
def test_ddp_matches_single_process(kind, tmp_path):
    out, ckpt = tmp_path / "ddp.pt", tmp_path / "ckpt.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "ddp_worker.py"), kind, str(out), str(ckpt)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=False)
    assert ddp["world"] == 2

    supernet, train, config, sampler = tiny_setup(kind)
    model = GhostBatch(supernet)
    result = ok.train_supernet(model, train, config, sampler=sampler, device="cpu", progress=False)
    assert ddp["images"] == result.images
    single = supernet.state_dict()
    plain, train, config, sampler = tiny_setup(kind)
    ok.train_supernet(plain, train, config, sampler=sampler, device="cpu", progress=False)
    init = tiny_setup(kind)[0].state_dict()
    # Same paths and averaged gradients: the updates agree up to BN using half-batch statistics on each rank.
    keys = [k for k, v in single.items()  # every trained weight, the K-shot simplex-net's included
            if torch.is_tensor(v) and v.is_floating_point() and "running" not in k]
    if kind == "kshot":
        assert any(k.startswith("simplex.") for k in keys) and ddp["warm_steps"] < result.steps
        assert not torch.equal(single["simplex.mlp.0.weight"], init["simplex.mlp.0.weight"])  # it trained
    delta_single = torch.cat([(single[k] - init[k]).flatten() for k in keys])
    delta_ddp = torch.cat([(ddp["state"][k] - init[k]).flatten() for k in keys])
    relative = ((delta_ddp - delta_single).norm() / delta_single.norm()).item()
    plain_state = plain.state_dict()
    delta_plain = torch.cat([(plain_state[k] - init[k]).flatten() for k in keys])
    plain_relative = ((delta_ddp - delta_plain).norm() / delta_plain.norm()).item()
    print(f"{kind}: relative difference of the weight updates, DDP vs single process: {relative:.2e} "
          f"(BN on each rank's half batch), {plain_relative:.3f} (BN on the whole batch)")
    # With each half batch normalised by its own BN statistics, as each rank does, the result is the same up to
    # float summation order.
    assert relative < 1e-4
    # only rank 0 wrote the checkpoint, and it loads
    assert ok.checkpoint.load_checkpoint(ckpt)["step"] == result.steps
    assert not list(tmp_path.glob(".*.tmp"))
