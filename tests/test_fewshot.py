from collections import Counter

import numpy as np
import optuna
import pytest
import torch

from optuna_kshot import (
    SupernetEvaluator,
    SupernetObjective,
    TrainConfig,
    UniformPaths,
    enn,
    evaluate_model,
    layerwise_space,
    load_subnet,
    macro_space,
    make_path_sampler,
    make_supernet,
    nb201_space,
    save_subnet,
    train_supernet,
)


def test_enn_counts_and_nb201_group_sizes():
    space = nb201_space(channels=4, cells_per_stage=1, resolution=16)
    sizes = Counter(enn(space, a) for a in space.enumerate())
    assert [sizes[v] for v in range(4)] == [1983, 7122, 5520, 1000]
    assert enn(space, space.from_key("333333")) == 3  # 0-1-2-3: three convs
    assert enn(space, space.from_key("303000")) == 0  # convs, but no path reaches node 3
    assert enn(space, space.from_key("300020")) == 2  # 0 -conv3-> 1 -conv1-> 3
    assert enn(space, space.from_key("300120")) == 2  # plus a skip 0 -> 3: the maximum over paths
    macro = macro_space(width_mult=0.125, resolution=16)
    assert enn(macro, macro.from_key("00000000")) == 0
    assert enn(macro, macro.from_key("12012000")) == 8
    lw = layerwise_space(width_mult=0.25, resolution=16)
    arch = {**lw.sample(0), **{f"layer{i}": "skip" for i in (1, 3, 4, 6, 7)}}
    assert enn(lw, arch) == 6


def test_narrowed_sub_supernets_keep_a_channel_floor():
    from optuna_kshot.spaces import scaled_space, space_from_config

    def widths(space):
        return [space.stem_channels, *(layer.out_channels for layer in space.layers), space.head_channels]

    full = layerwise_space(width_mult=1.0, in_channels=1, resolution=16)
    half = scaled_space(full, 0.5)
    assert widths(half) == [8, 12, 12, 20, 20, 20, 40, 40, 40, 160]  # plain halving (16 -> 8 is the floor)
    small = layerwise_space(width_mult=0.25, in_channels=1, resolution=16)  # stem 4, stages 6/10/20
    narrow = scaled_space(small, 0.5)
    assert min(widths(narrow)) == 4 and all(n <= f for n, f in zip(widths(narrow), widths(small)))
    assert space_from_config(narrow.to_config()).to_config() == narrow.to_config()  # checkpoints rebuild it
    assert "min_channels" not in small.to_config()  # default spaces keep their config
    nb = nb201_space(channels=8, cells_per_stage=1, resolution=8)
    assert [scaled_space(nb, r).to_config()["channels"] for r in (1 / 2, 1 / 3, 1 / 4)] == [4, 4, 4]
    nb = nb201_space(channels=16, cells_per_stage=1, resolution=8)
    assert [scaled_space(nb, r).to_config()["channels"] for r in (1 / 2, 1 / 3, 1 / 4)] == [8, 5, 4]
    with pytest.raises(ValueError, match="min_channels"):
        layerwise_space(min_channels=0)


@pytest.mark.parametrize("split", ["enn", "op:edge_1_0"])
def test_routing_covers_the_whole_space_once(split):
    space = nb201_space(channels=2, cells_per_stage=1, resolution=8)
    supernet = make_supernet(space, "fewshot", split=split, width_ratio=1.0, from_scratch=True)
    groups = [supernet.group(a) for a in space.enumerate()]
    assert len(groups) == space.size  # every arch routed, each to exactly one group
    assert set(groups) == set(range(supernet.n_groups))
    if split == "enn":
        assert supernet.n_groups == 4 and Counter(groups)[3] == 1000
    else:
        assert supernet.n_groups == 5 and all(n == 3125 for n in Counter(groups).values())


def test_custom_split_function_and_errors():
    space = macro_space(width_mult=0.125, resolution=16)
    supernet = make_supernet(space, "fewshot", split=lambda a: int(a["layer0"] == "skip"), n_groups=2)
    assert supernet.group(space.from_key("01111111")) == 1 and supernet.width_ratio == 0.5
    with pytest.raises(ValueError, match="n_groups"):
        make_supernet(space, "fewshot", split=lambda a: 0)
    bad = make_supernet(space, "fewshot", split=lambda a: 7, n_groups=2)
    with pytest.raises(ValueError, match="must return an int in \\[0, 1\\]"):
        bad.group(space.sample(0))
    with pytest.raises(ValueError, match="Unknown split"):
        make_supernet(space, "fewshot", split="random")
    with pytest.raises(KeyError, match="layer9"):
        make_supernet(space, "fewshot", split="op:layer9")


def test_reduced_width_default_is_one_over_k():
    space = nb201_space()
    assert [make_supernet(space, "fewshot", thresholds=t).subspace.channels for t in ([1], [1, 2], [1, 2, 3])] \
        == [8, 5, 4]


def test_op_split_needs_weight_transfer_or_says_from_scratch(tiny_space):
    with pytest.raises(ValueError, match="trained one-shot supernet.*--init-from.*from_scratch=True"):
        make_supernet(tiny_space, "fewshot", split="op:layer0")
    supernet = make_supernet(tiny_space, "fewshot", split="op:layer0", from_scratch=True)
    assert supernet.n_groups == len(tiny_space["layer0"].options)


def test_weight_transfer_then_own_training(tiny_space, tiny_data):
    oneshot = make_supernet(tiny_space, seed=0)
    train_supernet(oneshot, tiny_data.train, TrainConfig(epochs=1), sampler=UniformPaths(tiny_space),
                   progress=False)
    supernet = make_supernet(tiny_space, "fewshot", split="op:layer0", base=oneshot)
    reference = oneshot.state_dict()
    for sub in supernet.supernets:
        assert all(torch.equal(v, reference[k]) for k, v in sub.state_dict().items())
    train_supernet(supernet, tiny_data.train, TrainConfig(epochs=1), sampler=make_path_sampler("balanced", tiny_space,
                   supernet=supernet), progress=False)
    # each sub-supernet trained only on archs holding its option of layer0
    for g, sub in enumerate(supernet.supernets):
        own = supernet.split_info["options"][g]
        state = sub.state_dict()
        for op in supernet.split_info["options"]:
            key = f"model.layers.0.{op}.expand.0.weight"
            assert torch.equal(state[key], reference[key]) == (op != own), (g, op)
    with pytest.raises(ValueError, match="width_ratio=1"):
        make_supernet(tiny_space, "fewshot", split="op:layer0", base=oneshot, width_ratio=0.5)


def test_balanced_sampling_one_path_per_subsupernet_per_step(tiny_space, tiny_data):
    supernet = make_supernet(tiny_space, "fewshot", split="enn", thresholds=[6])
    sampler = make_path_sampler("balanced", tiny_space, supernet=supernet)
    rng = np.random.default_rng(0)
    for _ in range(20):
        archs = sampler.sample(rng)
        assert [supernet.group(a) for a in archs] == list(range(supernet.n_groups))
    before = [{k: v.clone() for k, v in s.state_dict().items()} for s in supernet.supernets]
    result = train_supernet(supernet, tiny_data.train, TrainConfig(budget_images=64 * 2), sampler=sampler,
                            progress=False)
    assert result.steps == 1 and result.images == 128  # one step, two paths on the same batch
    assert set(result.history[-1].extra) == {"loss_group0", "loss_group1"}  # per-sub-supernet losses
    for b, sub in zip(before, supernet.supernets):
        assert not torch.equal(b["model.stem.0.weight"], sub.state_dict()["model.stem.0.weight"])
    with pytest.raises(ValueError, match="needs a few-shot supernet"):
        make_path_sampler("balanced", tiny_space, supernet=make_supernet(tiny_space))


def test_disconnected_archs_are_never_trained():
    space = nb201_space(channels=2, cells_per_stage=1, resolution=8)
    sampler = make_supernet(space, "fewshot").balanced_sampler()
    rng = np.random.default_rng(1)
    archs = [a for _ in range(200) for a in sampler.sample(rng)]
    assert all(space.is_connected(a) for a in archs)
    assert any(enn(space, a) == 0 for a in archs)  # group 0 still trained, on its connected archs


def test_fewshot_through_objective_and_export(tiny_space, tiny_data, tmp_path):
    supernet = make_supernet(tiny_space, "fewshot", split="enn", thresholds=[6])
    train_supernet(supernet, tiny_data.train, TrainConfig(epochs=2, lr=0.1),
                   sampler=make_path_sampler("balanced", tiny_space, supernet=supernet), progress=False)
    evaluator = SupernetEvaluator(supernet, tiny_space, tiny_data.train, tiny_data.val, calib_batches=1)
    objective = SupernetObjective(evaluator, objectives=("accuracy", "macs"))
    study = objective.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=6)
    for t in study.trials:
        assert t.user_attrs["subsupernet"] == supernet.group(t.params)
        assert t.user_attrs["MACs"] == tiny_space.count_macs(t.params)  # the searched (full-width) arch
    trial = study.trials[0]
    subnet = evaluator.subnet(trial.params)
    save_subnet(subnet, tiny_space, trial.params, tmp_path / "s")
    loaded = load_subnet(tmp_path / "s")
    assert loaded.space == supernet.subspace  # the narrower sub-supernet's width is recorded
    accuracy, loss = evaluate_model(loaded, tiny_data.val)
    assert accuracy == trial.values[0] and loss == pytest.approx(trial.user_attrs["val_loss"], abs=1e-6)
    assert len({round(t.user_attrs["val_loss"], 6) for t in study.trials}) > 1  # trained: scores differ
