import numpy as np
import pytest
import torch

from optuna_kshot import (
    SupernetEvaluator,
    TrainConfig,
    UniformPaths,
    build_subnet,
    count_flops,
    layerwise_space,
    load_subnet,
    macro_space,
    make_supernet,
    nb201_space,
    save_subnet,
    train_supernet,
)
from optuna_kshot.supernets import Stabilizer


def _weight(m):
    """A stabilizer's own weight (copy 0 of a K-shot one)."""
    from torch.nn.utils import parametrize

    return m.parametrizations.weight.original if parametrize.is_parametrized(m) else m.weight


def _skip_arch(space, rng):
    while True:
        arch = space.sample(rng)
        if any(arch[f"layer{i}"] == "skip" and not layer.reshapes for i, layer in enumerate(space.layers)):
            return arch


@pytest.mark.parametrize("kind", ["oneshot", "kshot"])
def test_skip_archs_train_and_score_through_the_stabilizer(tiny_space, tiny_data, kind):
    options = {"k": 2} if kind == "kshot" else {}
    supernet = make_supernet(tiny_space, kind, stabilizer=True, **options)
    base = supernet.base if kind == "kshot" else supernet
    stabilizers = [m for m in base.modules() if isinstance(m, Stabilizer)]
    assert stabilizers and all(torch.equal(_weight(m)[:, :, 0, 0], torch.eye(_weight(m).shape[0]))
                               for m in stabilizers)
    before = [_weight(m).clone() for m in stabilizers]
    train_supernet(supernet, tiny_data.train, TrainConfig(epochs=2, lr=0.1), sampler=UniformPaths(tiny_space),
                   progress=False)
    assert any(not torch.equal(b, _weight(m)) for b, m in zip(before, stabilizers))  # they learn
    evaluator = SupernetEvaluator(supernet, tiny_space, tiny_data.train, tiny_data.val, calib_batches=1)
    arch = _skip_arch(tiny_space, np.random.default_rng(0))
    scored = evaluator.subnet(arch)
    assert any(isinstance(m, Stabilizer) for m in scored.modules())  # scoring runs the stabilizer
    assert 0 <= evaluator.score(arch).accuracy <= 1


def test_export_drops_the_stabilizer_and_flops_count_skips_free(tiny_space, tiny_data, tmp_path):
    supernet = make_supernet(tiny_space, stabilizer=True)
    with torch.no_grad():  # make the stabilizers clearly not the identity
        for m in supernet.modules():
            if isinstance(m, Stabilizer):
                m.weight.mul_(0.5)
    arch = _skip_arch(tiny_space, np.random.default_rng(1))
    deployed = supernet.export(arch, deploy=True)
    assert not any(isinstance(m, Stabilizer) for m in deployed.modules())
    plain = build_subnet(tiny_space, arch)
    assert plain.state_dict().keys() == deployed.state_dict().keys()
    x = torch.randn(2, 1, 28, 28)
    supernet.eval()
    deployed.eval()
    with torch.no_grad():
        kept = supernet.export(arch).eval()
        torch.testing.assert_close(kept(x), supernet(x, arch), rtol=0, atol=1e-5)
        assert not torch.allclose(deployed(x), supernet(x, arch))
    save_subnet(deployed, tiny_space, arch, tmp_path / "s")
    load_subnet(tmp_path / "s")
    assert sum(p.numel() for p in deployed.parameters()) == tiny_space.count_params(arch)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        deployed(x[:1])
    assert counter.get_total_flops() == count_flops(tiny_space, arch)


def test_reshaping_skips_keep_their_projection():
    space = macro_space(width_mult=0.125, resolution=16)
    supernet = make_supernet(space, stabilizer=True)
    assert type(supernet.model.layers[0]["skip"]).__name__ == "ConvBN"  # stride 2: NAS-Bench-Macro's projection
    assert isinstance(supernet.model.layers[1]["skip"], Stabilizer)


def test_nb201_refuses_unless_forced():
    space = nb201_space(channels=4, cells_per_stage=1, resolution=16)
    with pytest.raises(ValueError, match="start with ReLU"):
        make_supernet(space, stabilizer=True)
    supernet = make_supernet(space, force_stabilizer=True)
    arch = space.from_key("111111")
    x = torch.randn(2, 3, 16, 16)
    supernet.eval()
    with torch.no_grad():
        torch.testing.assert_close(supernet.export(arch).eval()(x), supernet(x, arch), rtol=0, atol=1e-5)
    assert not any(isinstance(m, Stabilizer) for m in supernet.export(arch, deploy=True).modules())


def test_layerwise_default_space_has_skips():
    space = layerwise_space()
    assert sum("skip" in c.options for c in space.choices) == 5
