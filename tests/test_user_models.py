"""A user's own model as a search space: discovery, kinds, costs, export without the user's code, bad input."""

import subprocess
import sys

import numpy as np
import optuna
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import optuna_kshot as ok

from .user_models import MLP, AugmentedImages, FlatImages, SmallResNet


@pytest.fixture(scope="module")
def splits(default_data):
    return (AugmentedImages(default_data.train.subset(torch.arange(256))),
            AugmentedImages(default_data.val.subset(torch.arange(128)), augment=False))


def test_space_is_discovered_as_trial_params_hold_it():
    supernet = ok.make_supernet(SmallResNet(), example_input=torch.zeros(2, 1, 28, 28))
    space = supernet.space
    assert space.names == ("stage1", "stage2", "stage3", "stage3_kernel", "width")
    assert space["stage1"].options == ("conv3", "conv5", "skip")
    assert space["stage2"].options == ("conv3", "skip")  # two blocks share one decision
    assert space["width"].options == (0.5, 1.0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    arch = space.suggest(trial)
    assert trial.params == arch and space.validate(trial.params) == arch
    logits = supernet(torch.zeros(3, 1, 28, 28), arch)
    assert logits.shape == (3, 10)


def test_shared_decision_runs_both_blocks_with_one_option():
    supernet = ok.make_supernet(SmallResNet(), example_input=torch.zeros(2, 1, 28, 28))
    arch = {**supernet.space.sample(0), "stage2": "skip"}
    subnet = supernet.export(arch)
    assert all(isinstance(block, ok.Skip) for block in subnet.stage2)
    arch["stage2"] = "conv3"
    assert not any(isinstance(block, ok.Skip) for block in supernet.export(arch).stage2)


def test_the_users_model_is_left_as_it_is():
    model = SmallResNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ok.make_supernet(model, "kshot", k=2, stabilizer=True, example_input=torch.zeros(1, 1, 28, 28))
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert any(isinstance(m, ok.Skip) for m in model.modules())


def test_stabilizer_shapes_come_from_a_probe_forward():
    from optuna_kshot.supernets import Stabilizer

    conv = ok.make_supernet(SmallResNet(), stabilizer=True, example_input=torch.zeros(1, 1, 28, 28))
    mlp = ok.make_supernet(MLP(), stabilizer=True, example_input=torch.zeros(1, 196))
    conv_stab = [m for m in conv.modules() if isinstance(m, Stabilizer)]
    mlp_stab = [m for m in mlp.modules() if isinstance(m, Stabilizer)]
    assert {tuple(m.weight.shape) for m in conv_stab} == {(8, 8, 1, 1), (16, 16, 1, 1)}
    assert all(m.conv for m in conv_stab)
    assert {tuple(m.weight.shape) for m in mlp_stab} == {(32, 32)} and not any(m.conv for m in mlp_stab)
    with pytest.raises(ValueError, match="example_input"):
        ok.make_supernet(MLP(), stabilizer=True)


def test_costs_are_measured_on_the_exported_subnet_and_agree_with_analytic_counts():
    supernet = ok.make_supernet(SmallResNet(), example_input=torch.zeros(2, 1, 28, 28))
    costs = ok.ArchCosts(supernet.space, supernet)
    assert costs.available and not costs.analytic
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(6):
        arch = supernet.space.sample(rng)
        c = costs(arch)
        subnet = supernet.export(arch, deploy=True)
        assert c == ok.measure_costs(subnet, torch.zeros(1, 1, 28, 28)) and c["FLOPs"] == 2 * c["MACs"]
        seen.add(c["MACs"])
    assert len(seen) > 2
    # built-in spaces: the analytic counts are what FlopCounterMode measures on the exported subnet
    for space in (ok.layerwise_space(width_mult=0.25, widths=(0.5, 1.0), resolution=16, in_channels=1),
                  ok.macro_space(width_mult=0.125, resolution=16), ok.nb201_space(channels=4, cells_per_stage=1,
                                                                                   resolution=16)):
        built_in = ok.make_supernet(space)
        measured = ok.ArchCosts(ok.SearchSpace(space.choices), built_in)
        assert not measured.analytic
        for arch in (space.sample(s) for s in range(4)):
            assert measured(arch) == ok.ArchCosts(space)(arch)


def test_objective_without_costs_searches_accuracy_alone(splits):
    supernet = ok.make_supernet(SmallResNet())  # no example input: no costs
    evaluator = ok.SupernetEvaluator(supernet, None, *splits, calib_batches=1, batch_size=64)
    with pytest.raises(ValueError, match="example_input"):
        ok.SupernetObjective(evaluator, objectives=("accuracy", "macs"))
    objective = ok.SupernetObjective(evaluator)
    study = objective.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=2)
    assert "MACs" not in study.trials[0].user_attrs and 0 <= study.trials[0].values[0] <= 1


@pytest.mark.slow
def test_trains_on_a_dataloader_with_augmentation_and_exports_without_the_users_code(splits, tmp_path):
    supernet = ok.make_supernet(SmallResNet(), "kshot", k=2, example_input=torch.zeros(2, 1, 28, 28))
    loader = DataLoader(splits[0], batch_size=32, shuffle=True)
    result = ok.train_supernet(supernet, loader, ok.TrainConfig(epochs=2, batch_size=32, lr=0.05),
                               sampler=ok.UniformPaths(supernet.space), progress=False)
    assert result.history[-1].loss < result.history[0].loss
    evaluator = ok.SupernetEvaluator(supernet, None, splits[0], splits[1], calib_batches=2, batch_size=64)
    objective = ok.SupernetObjective(evaluator, objectives=("accuracy", "macs"))
    study = objective.create_study(sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=4))
    study.optimize(objective, n_trials=4)
    trial = max(study.best_trials, key=lambda t: t.values[0])
    subnet = evaluator.subnet(trial.params)
    out = ok.save_subnet(subnet, supernet.space, trial.params, tmp_path / "subnet",
                         example_input=supernet.example_input())
    x = torch.stack([splits[1][i][0] for i in range(16)])
    expected = subnet.eval()(x)
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "expected.pt")
    # a fresh interpreter that never imports the model's code (tests.user_models) loads and runs it
    code = (
        "import sys, torch, optuna_kshot as ok\n"
        f"m = ok.load_subnet({str(out)!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        f"assert torch.allclose(m(x), torch.load({str(tmp_path / 'expected.pt')!r}), atol=1e-5)\n"
        "assert not any(k.startswith('tests') for k in sys.modules)\n"
        "print(m(x[:3]).shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch.Size([3, 10])" in proc.stdout
    accuracy, loss = ok.evaluate_model(ok.load_subnet(out), splits[1])
    assert accuracy == trial.values[0] and loss == pytest.approx(trial.user_attrs["val_loss"], abs=1e-5)


def test_checkpoint_of_another_model_is_refused(splits, tmp_path):
    supernet = ok.make_supernet(MLP(), example_input=torch.zeros(2, 196))
    path = tmp_path / "s.pt"
    ok.train_supernet(supernet, FlatImages(ok.load_default().train.subset(torch.arange(64))),
                      ok.TrainConfig(epochs=1, batch_size=32), sampler=ok.UniformPaths(supernet.space),
                      checkpoint=path, metadata=ok.supernet_metadata(supernet), progress=False)
    loaded, _, _ = ok.load_supernet(path, model=MLP())
    assert loaded.space == supernet.space
    with pytest.raises(ok.CheckpointError, match="another model.*l1|another model.*stage1"):
        ok.load_supernet(path, model=SmallResNet())
    with pytest.raises(ok.CheckpointError, match="pass the model"):
        ok.load_supernet(path)

    class Narrow(MLP):
        def __init__(self):
            super().__init__(hidden=16)

    with pytest.raises(ok.CheckpointError, match="does not fit"):
        ok.load_supernet(path, model=Narrow())


class NoChoices(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


class ShapeClash(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = ok.OpChoice("body", {"same": nn.Linear(4, 4), "wider": nn.Linear(4, 8)})
        self.out = nn.LazyLinear(2)

    def forward(self, x):
        return self.body(x)


class TwoNames(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = ok.OpChoice("block", {"x": nn.Identity(), "y": nn.ReLU()})
        self.b = ok.OpChoice("block", {"x": nn.Identity(), "z": nn.Tanh()})

    def forward(self, x):
        return self.b(self.a(x))


def test_bad_models_and_archs_are_clear_errors():
    with pytest.raises(ValueError, match="NoChoices has no choices.*OpChoice"):
        ok.make_supernet(NoChoices())
    with pytest.raises(ValueError, match="choice 'body' give outputs of different shapes"):
        ok.make_supernet(ShapeClash(), example_input=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="'block' is declared twice with different options"):
        ok.make_supernet(TwoNames())
    supernet = ok.make_supernet(MLP(), example_input=torch.zeros(1, 196))
    with pytest.raises(ValueError, match="'l2' got 'huge'.*'wide', 'narrow', 'skip'"):
        supernet(torch.zeros(1, 196), {"l1": "relu", "l2": "huge"})
    with pytest.raises(ValueError, match="misses choices \\['l2'\\]"):
        supernet(torch.zeros(1, 196), {"l1": "relu"})
    with pytest.raises(RuntimeError, match="outside a supernet call"):
        supernet.model(torch.zeros(1, 196))
    with pytest.raises(TypeError, match="option names must be non-empty str"):
        ok.OpChoice("x", {"a.b": nn.Identity()})
    with pytest.raises(ValueError, match="Narrower sub-supernets"):
        ok.make_supernet(MLP(), "fewshot", split="op:l1", from_scratch=True, width_ratio=0.5)


def test_fewshot_by_enn_counts_activations_on_the_chosen_path():
    supernet = ok.make_supernet(MLP(), "fewshot", split="enn", thresholds=[2], example_input=torch.zeros(1, 196))
    assert supernet.n_groups == 2
    assert ok.enn(supernet.space, {"l1": "skip", "l2": "skip"}, supernet.supernets[0].model) == 0
    assert ok.enn(supernet.space, {"l1": "gelu", "l2": "wide"}, supernet.supernets[0].model) == 2
    assert supernet.group({"l1": "gelu", "l2": "wide"}) == 1 and supernet.group({"l1": "relu", "l2": "skip"}) == 0
