import numpy as np
import optuna
import pytest
import torch

from optuna_kshot import (
    SupernetEvaluator,
    SupernetObjective,
    TrainConfig,
    UniformPaths,
    evaluate_model,
    layerwise_space,
    load_subnet,
    load_supernet,
    make_supernet,
    save_subnet,
    supernet_metadata,
    train_supernet,
)
from optuna_kshot.supernets import KShotSupernet, code_stats

from .helpers import tiny_spaces


def spaces():
    return tiny_spaces(widths=(0.5, 1.0))


def _copies(supernet):
    """(copy 0, stacked copies 1..K-1) of every parameter with K copies."""
    from torch.nn.utils import parametrize

    return [(plist.original, plist[0].others) for m in supernet.modules() if parametrize.is_parametrized(m)
            for plist in m.parametrizations.values()]


@pytest.mark.parametrize("space", spaces(), ids=lambda s: s.kind)
def test_export_merges_copies_into_one_plain_subnet(space):
    supernet = make_supernet(space, "kshot", k=3, seed=0)
    x = torch.randn(3, space.in_channels, 16, 16)
    arch = space.sample(4)
    subnet = supernet.export(arch)
    assert type(subnet).__name__ in {"ChainNetwork", "NB201Network"}
    assert all(isinstance(p, torch.nn.Parameter) for p in subnet.parameters())
    assert sum(p.numel() for p in subnet.parameters()) == space.count_params(arch)
    supernet.warming_up.fill_(False)
    for mode in (False, True):
        supernet.train(mode)
        with torch.no_grad():
            torch.testing.assert_close(supernet.export(arch).train(mode)(x), supernet(x, arch), rtol=0, atol=1e-5)


def test_merge_is_differentiable_in_copies_and_simplex_net():
    space = spaces()[0]
    supernet = make_supernet(space, "kshot", k=3)
    arch = space.sample(0)
    code = supernet.code(arch)
    assert code.shape == (3,) and torch.isclose(code.sum(), torch.tensor(1.0)) and (code >= 0).all()
    out = supernet(torch.randn(2, 1, 16, 16), arch, code=code)
    out.square().mean().backward()
    assert any(others.grad is not None and others.grad.abs().sum() > 0 for _, others in _copies(supernet))
    assert all(p.grad is not None for p in supernet.simplex.parameters())


def test_training_moves_copies_apart_and_spreads_codes(tiny_space, tiny_data):
    """What training changes: each copy of an op moves away from where it started, and by a different step than
    copy 0 (in the warm-up every copy gets the same update; only codes that differ across archs make them
    diverge), and the codes of different archs spread (an untrained simplex-net gives nearly one code to all)."""
    supernet = make_supernet(tiny_space, "kshot", k=4, seed=0, warmup_fraction=0.25, simplex_lr=0.03, simplex_every=1)
    start = [(first.detach().clone(), others.detach().clone()) for first, others in _copies(supernet)]
    archs = [tiny_space.sample(s) for s in range(32)]
    spread_before = code_stats(supernet.simplex(archs))["code_spread"]
    result = train_supernet(supernet, tiny_data.train, TrainConfig(epochs=3, lr=0.1),
                            sampler=UniformPaths(tiny_space), progress=False)
    apart = []
    for (first0, others0), (first, others) in zip(start, _copies(supernet)):
        step0 = first.detach() - first0
        if step0.norm() <= 1e-6 * first0.norm():  # an op no sampled path used
            continue
        steps = others.detach() - others0
        apart.append(((steps - step0).flatten(1).norm(dim=1) / step0.norm()).min())
    assert apart and float(torch.stack(apart).median()) > 0.01
    stats = code_stats(supernet.simplex(archs).detach())
    assert stats["code_spread"] > 2 * spread_before
    assert 0.05 < stats["code_entropy"] < np.log(4) - 1e-4  # not collapsed to one-hot, not uniform
    # Entropy and spread are logged per epoch (and so stored in the checkpoint's history).
    assert all({"code_entropy", "code_spread"} <= set(r.extra) for r in result.history)


def test_copies_decay_like_copy_zero_and_base_is_copied(tiny_space, tiny_data):
    from optuna_kshot.supernets import KShotSupernet

    base = make_supernet(tiny_space, seed=0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    supernet = make_supernet(tiny_space, "kshot", k=3, base=base)
    assert isinstance(supernet, KShotSupernet) and supernet.base is not base
    groups = supernet.parameter_groups(0.1)
    decay = {id(p) for g in groups if g["weight_decay"] for p in g["params"]}
    pairs = _copies(supernet)
    assert any(first.ndim == 1 for first, _ in pairs)  # BN affines have copies too
    for first, others in pairs:
        assert (id(first) in decay) == (id(others) in decay) == (first.ndim > 1)
    train_supernet(supernet, tiny_data.train, TrainConfig(epochs=1), sampler=UniformPaths(tiny_space),
                   progress=False)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())  # the caller's base untouched


@pytest.mark.slow
def test_kshot_checkpoint_resume_and_load(tiny_space, tiny_data, tmp_path):
    config = TrainConfig(epochs=2, seed=1, checkpoint_every_steps=3)
    full = make_supernet(tiny_space, "kshot", k=2, seed=1)
    meta = supernet_metadata(full)
    train_supernet(full, tiny_data.train, config, sampler=UniformPaths(tiny_space), progress=False)

    class Stop(UniformPaths):
        calls = 0

        def sample(self, rng):
            Stop.calls += 1
            if Stop.calls == 13:
                raise KeyboardInterrupt
            return super().sample(rng)

    ckpt = tmp_path / "k.pt"
    with pytest.raises(KeyboardInterrupt):
        train_supernet(make_supernet(tiny_space, "kshot", k=2, seed=1), tiny_data.train, config,
                       sampler=Stop(tiny_space), checkpoint=ckpt, metadata=meta, progress=False)
    resumed = make_supernet(tiny_space, "kshot", k=2, seed=1)
    train_supernet(resumed, tiny_data.train, config, sampler=UniformPaths(tiny_space), checkpoint=ckpt,
                   metadata=meta, progress=False)
    sa, sb = full.state_dict(), resumed.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    loaded, space, _ = load_supernet(ckpt)
    assert isinstance(loaded, KShotSupernet) and loaded.k == 2 and space == tiny_space


def test_kshot_through_objective_and_export(tiny_space, tiny_data, tmp_path):
    supernet = make_supernet(tiny_space, "kshot", k=2)
    train_supernet(supernet, tiny_data.train, TrainConfig(epochs=2, lr=0.1), sampler=UniformPaths(tiny_space),
                   progress=False)
    evaluator = SupernetEvaluator(supernet, tiny_space, tiny_data.train, tiny_data.val, calib_batches=1)
    objective = SupernetObjective(evaluator, objectives=("accuracy", "macs"))
    study = objective.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    trial = study.trials[0]
    code = trial.user_attrs["kshot_code"]
    assert len(code) == 2 and abs(sum(code) - 1) < 1e-4
    save_subnet(evaluator.subnet(trial.params), tiny_space, trial.params, tmp_path / "s")
    accuracy, loss = evaluate_model(load_subnet(tmp_path / "s"), tiny_data.val)
    assert accuracy == trial.values[0] and loss == pytest.approx(trial.user_attrs["val_loss"], abs=1e-6)
    assert len({round(t.user_attrs["val_loss"], 6) for t in study.trials}) > 1  # a trained supernet, not constant


def test_width_regulariser_separates_width_codes():
    space = layerwise_space(width_mult=0.25, widths=(0.5, 1.0), resolution=16, in_channels=1)
    supernet = make_supernet(space, "kshot", k=4, width_separation=1.0)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(8)]
    opt = torch.optim.Adam(supernet.simplex.parameters(), lr=1e-2)
    before = supernet._width_similarity(archs, supernet.simplex(archs), np.random.default_rng(1)).item()
    for _ in range(30):
        opt.zero_grad()
        supernet._width_similarity(archs, supernet.simplex(archs), np.random.default_rng(1)).backward()
        opt.step()
    after = supernet._width_similarity(archs, supernet.simplex(archs), np.random.default_rng(1)).item()
    assert after < before - 0.05


def test_bad_k():
    with pytest.raises(ValueError, match="`k` must be a positive int"):
        make_supernet(spaces()[1], "kshot", k=0)
