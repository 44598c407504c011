import numpy as np
import optuna
import pytest
import torch

from optuna_kshot import (
    SupernetEvaluator,
    SupernetObjective,
    TrainConfig,
    UniformSampler,
    evaluate_model,
    layerwise_space,
    load_subnet,
    load_supernet,
    macro_space,
    make_supernet,
    nb201_space,
    save_subnet,
    supernet_metadata,
    train_supernet,
)
from optuna_kshot.kshot import KShotSupernet, code_stats


def spaces():
    return [
        layerwise_space(width_mult=0.25, widths=(0.5, 1.0), resolution=16, in_channels=1),
        macro_space(width_mult=0.125, resolution=16),
        nb201_space(channels=4, cells_per_stage=1, resolution=16),
    ]


@pytest.mark.parametrize("space", spaces(), ids=lambda s: s.kind)
def test_k1_reproduces_one_shot_exactly(space):
    oneshot = make_supernet(space, seed=3)
    k1 = KShotSupernet(space, 1, base=oneshot)
    x = torch.randn(4, space.in_channels, 16, 16)
    rng = np.random.default_rng(0)
    for mode in (True, False):
        oneshot.train(mode)
        k1.train(mode)
        for _ in range(3):
            arch = space.sample(rng)
            with torch.no_grad():
                assert torch.equal(k1(x, arch), oneshot(x, arch))
    data_x = torch.randn(64, space.in_channels, 16, 16)
    from optuna_kshot import ArrayDataset

    images = (data_x.clamp(-2, 2) * 60 + 128).to(torch.uint8)
    ds = ArrayDataset(images, torch.randint(0, space.num_classes, (64,)), (0.5,) * space.in_channels,
                      (0.25,) * space.in_channels)
    a = SupernetEvaluator(oneshot, space, ds, ds, calib_batches=1, batch_size=32)
    b = SupernetEvaluator(k1, space, ds, ds, calib_batches=1, batch_size=32)
    for _ in range(3):
        arch = space.sample(rng)
        assert (a.score(arch).accuracy, a.score(arch).loss) == (b.score(arch).accuracy, b.score(arch).loss)


@pytest.mark.parametrize("space", spaces(), ids=lambda s: s.kind)
def test_export_merges_copies_into_one_plain_subnet(space):
    supernet = make_supernet(space, "kshot", k=3, seed=0)
    x = torch.randn(3, space.in_channels, 16, 16)
    arch = space.sample(4)
    subnet = supernet.export(arch)
    assert type(subnet).__name__ in {"ChainNetwork", "NB201Network"} and subnet.is_subnet
    assert all(isinstance(p, torch.nn.Parameter) for p in subnet.parameters())
    assert sum(p.numel() for p in subnet.parameters()) == space.count_params(arch)
    for mode in (False, True):
        supernet.train(mode)
        supernet.warming_up.fill_(False)
        with torch.no_grad():
            torch.testing.assert_close(subnet.train(mode)(x), supernet(x, arch), rtol=0, atol=1e-5)


def test_merge_is_differentiable_in_copies_and_simplex_net():
    space = spaces()[0]
    supernet = make_supernet(space, "kshot", k=3)
    arch = space.sample(0)
    code = supernet.code(arch)
    assert code.shape == (3,) and torch.isclose(code.sum(), torch.tensor(1.0)) and (code >= 0).all()
    out = supernet(torch.randn(2, 1, 16, 16), arch, code=code)
    out.square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in supernet.copies.parameters())
    assert all(p.grad is not None for p in supernet.simplex.parameters())


def test_copies_and_codes_diverge_after_training(tiny_space, tiny_data):
    supernet = make_supernet(tiny_space, "kshot", k=4, seed=0, warmup_fraction=0.25)
    result = train_supernet(supernet, tiny_data.train, TrainConfig(epochs=3, lr=0.1),
                            sampler=UniformSampler(tiny_space), progress=False)
    # The copies of an op differ from each other (they started independent and got different gradients).
    named = dict(supernet.base.named_parameters())
    for name, extra in supernet.copies.items():
        first = named[name.replace("__", ".")]
        for j in range(3):
            assert (extra[j] - first).norm() > 1e-3 * first.norm(), name
    # Codes differ across archs and are not collapsed to one-hot.
    codes = supernet.simplex([tiny_space.sample(s) for s in range(32)]).detach()
    stats = code_stats(codes)
    assert stats["code_spread"] > 1e-3
    assert 0.05 < stats["code_entropy"] < np.log(4) - 1e-4
    # Entropy and spread are logged per epoch (and so stored in the checkpoint's history).
    assert all({"code_entropy", "code_spread"} <= set(r.extra) for r in result.history)


def test_kshot_checkpoint_resume_and_load(tiny_space, tiny_data, tmp_path):
    config = TrainConfig(epochs=2, seed=1, checkpoint_every_steps=3)
    meta = supernet_metadata(tiny_space, "kshot", k=2)
    full = make_supernet(tiny_space, "kshot", k=2, seed=1)
    train_supernet(full, tiny_data.train, config, sampler=UniformSampler(tiny_space), progress=False)

    class Stop(UniformSampler):
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
    train_supernet(resumed, tiny_data.train, config, sampler=UniformSampler(tiny_space), checkpoint=ckpt,
                   metadata=meta, progress=False)
    sa, sb = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if not k.endswith("_extra_state"))
    loaded, space, _ = load_supernet(ckpt)
    assert isinstance(loaded, KShotSupernet) and loaded.k == 2 and space == tiny_space


def test_kshot_through_objective_and_export(tiny_space, tiny_data, tmp_path):
    supernet = make_supernet(tiny_space, "kshot", k=2)
    evaluator = SupernetEvaluator(supernet, tiny_space, tiny_data.train, tiny_data.val, calib_batches=1)
    objective = SupernetObjective(evaluator, objectives=("accuracy", "macs"))
    study = objective.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    trial = study.trials[0]
    code = trial.user_attrs["kshot_code"]
    assert len(code) == 2 and abs(sum(code) - 1) < 1e-4
    save_subnet(evaluator.subnet(trial.params), tiny_space, trial.params, tmp_path / "s")
    accuracy, _ = evaluate_model(load_subnet(tmp_path / "s"), tiny_data.val)
    assert accuracy == trial.values[0]


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
