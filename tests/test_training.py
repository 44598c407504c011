import math

import numpy as np
import pytest
import torch

from optuna_kshot import (
    CheckpointError,
    FairPaths,
    FlopsBinPaths,
    SandwichPaths,
    TrainConfig,
    TrainingDiverged,
    UniformPaths,
    make_supernet,
    supernet_metadata,
    train_supernet,
)
from optuna_kshot.checkpoint import load_checkpoint, save_checkpoint


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_config_validation():
    with pytest.raises(ValueError, match="`lr`"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="`epochs`"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="`batch_size`"):
        TrainConfig(batch_size=2.5)
    with pytest.raises(ValueError, match="`warmup`"):
        TrainConfig(warmup=1.0)


def test_warmup_rises_linearly_then_decays_by_cosine(tiny_space, tiny_data):
    """With warm-up the learning rate climbs to its peak over that share of the steps, then follows a cosine to 0;
    without, the schedule is the plain cosine (as before the option existed)."""
    from optuna_kshot.training import _schedule

    plain, warm = _schedule(100, 0.0), _schedule(100, 0.1)
    assert [plain(s) for s in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0])
    assert [warm(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert warm(10) == pytest.approx(1.0) and warm(55) == pytest.approx(0.5) and warm(100) == pytest.approx(0.0)
    assert all(warm(s) >= warm(s + 1) for s in range(10, 100))
    config = TrainConfig(epochs=1, batch_size=64, lr=0.1, warmup=0.5)
    result = train_supernet(make_supernet(tiny_space), tiny_data.train, config, sampler=UniformPaths(tiny_space),
                            progress=False)
    assert result.steps == 8 and result.history[-1].lr == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi)))


def test_sandwich_trains_the_ends_and_random_archs_with_inplace_distillation(tiny_space, tiny_data):
    """BigNAS's sandwich rule: the largest and smallest arch (by MACs: no enumeration beats them) and 2 random
    ones per step, every path counted in the budget; the students learn from the largest arch's predictions, so
    training differs from the same paths on labels alone."""
    sampler = SandwichPaths(tiny_space)
    macs = [tiny_space.count_macs(a) for a in tiny_space.enumerate()]
    assert tiny_space.count_macs(sampler.largest) == max(macs)
    assert tiny_space.count_macs(sampler.smallest) == min(macs)
    paths = sampler.sample(np.random.default_rng(0))
    assert len(paths) == 4 and paths[0] == sampler.largest and paths[1] == sampler.smallest
    config = TrainConfig(budget_images=64 * 4 * 3, batch_size=64, lr=0.1)
    a, b = make_supernet(tiny_space, seed=0), make_supernet(tiny_space, seed=0)
    result = train_supernet(a, tiny_data.train, config, sampler=sampler, progress=False)
    assert result.steps == 3 and result.images == 64 * 4 * 3
    train_supernet(b, tiny_data.train, config, sampler=SandwichPaths(tiny_space, distill=False), progress=False)
    assert not _same_weights(a, b)
    with pytest.raises(ValueError, match="`n_random`"):
        SandwichPaths(tiny_space, n_random=-1)


def test_training_reduces_loss_and_is_seeded(tiny_space, tiny_data):
    config = TrainConfig(epochs=3, batch_size=64, lr=0.1, seed=1)
    a = make_supernet(tiny_space, seed=1)
    result = train_supernet(a, tiny_data.train, config, sampler=UniformPaths(tiny_space), progress=False)
    assert result.steps == 3 * (512 // 64) and result.images == result.steps * 64
    assert result.history[-1].loss < result.history[0].loss
    b = make_supernet(tiny_space, seed=1)
    train_supernet(b, tiny_data.train, config, sampler=UniformPaths(tiny_space), progress=False)
    assert _same_weights(a, b)


def test_off_path_ops_get_no_update(tiny_space, tiny_data):
    """SPOS: an op never on a sampled path keeps its initial weights (no weight decay, no momentum)."""

    class OnlyK3(UniformPaths):
        def sample(self, rng):
            arch = self.space.sample(rng)
            return [{k: ("k3e2" if k.startswith("layer") else v) for k, v in arch.items()}]

    supernet = make_supernet(tiny_space, seed=0)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    train_supernet(supernet, tiny_data.train, TrainConfig(epochs=1, weight_decay=0.1), sampler=OnlyK3(tiny_space),
                   progress=False)
    after = supernet.state_dict()
    untouched = [k for k in before if ".k5e4." in k and k.endswith("weight")]
    touched = [k for k in before if ".k3e2." in k and k.endswith("weight")]
    assert untouched and touched
    assert all(torch.equal(before[k], after[k]) for k in untouched)
    assert all(not torch.equal(before[k], after[k]) for k in touched)


def test_budget_in_images_counts_every_path(tiny_space, tiny_data):
    sampler = FairPaths(tiny_space)
    assert len(sampler.sample(np.random.default_rng(0))) == sampler.m == 5
    config = TrainConfig(budget_images=64 * 5 * 3, batch_size=64)
    result = train_supernet(make_supernet(tiny_space), tiny_data.train, config, sampler=sampler, progress=False)
    assert result.steps == 3 and result.images == 64 * 5 * 3


def test_fair_sampler_trains_every_option_once_per_step(tiny_space):
    sampler = FairPaths(tiny_space)
    archs = sampler.sample(np.random.default_rng(3))
    for choice in tiny_space.choices:
        values = [a[choice.name] for a in archs]
        assert set(values) == set(choice.options)
        if len(choice.options) == sampler.m:
            assert sorted(map(str, values)) == sorted(map(str, choice.options))


def test_kshot_budget_counts_the_simplex_net_turns(tiny_space, tiny_data):
    """Every forward that trains something counts: with a simplex-net turn after every step past the warm-up,
    a K-shot run reaches the same image budget in fewer steps than a one-shot run, and reports the same images."""
    from optuna_kshot import images_per_run

    budget = 64 * 12
    config = TrainConfig(budget_images=budget, batch_size=64)
    one = train_supernet(make_supernet(tiny_space), tiny_data.train, config, sampler=UniformPaths(tiny_space),
                         progress=False)
    kshot = make_supernet(tiny_space, "kshot", k=2, warmup_fraction=0.25, simplex_every=1)
    k = train_supernet(kshot, tiny_data.train, config, sampler=UniformPaths(tiny_space), progress=False)
    assert one.steps == 12 and one.images == budget
    # T steps and T - ceil(T/4) + 1 simplex turns of one batch each: T = 7 gives 7 + 6 = 13 batches >= 12
    assert k.steps == 7 and k.images == 64 * 13
    assert images_per_run(k.steps, 64, 1, kshot.phases()) == k.images
    assert images_per_run(k.steps - 1, 64, 1, kshot.phases()) < budget


def test_flops_bin_sampler_covers_bins(tiny_space):
    sampler = FlopsBinPaths(tiny_space, bins=4, seed=0)
    rng = np.random.default_rng(0)
    bins = [sampler._bin(tiny_space.count_macs(sampler.sample(rng)[0])) for _ in range(400)]
    counts = np.bincount(bins, minlength=4)
    assert (counts > 50).sum() >= 3  # the sparse extreme bins get about as many samples as the crowded ones


def test_resume_after_kill_gives_same_result(tiny_space, tiny_data, tmp_path):
    config = TrainConfig(epochs=3, batch_size=64, seed=2, checkpoint_every_steps=5)
    meta = supernet_metadata(make_supernet(tiny_space))
    full = make_supernet(tiny_space, seed=2)
    train_supernet(full, tiny_data.train, config, sampler=UniformPaths(tiny_space), progress=False)

    class Killed(Exception):
        pass

    def kill_after_first_epoch(record, model):
        raise Killed

    ckpt = tmp_path / "supernet.pt"
    with pytest.raises(Killed):
        train_supernet(make_supernet(tiny_space, seed=2), tiny_data.train, config, sampler=UniformPaths(tiny_space),
                       checkpoint=ckpt, metadata=meta, callbacks=[kill_after_first_epoch], progress=False)
    assert load_checkpoint(ckpt)["step"] == 8
    resumed = make_supernet(tiny_space, seed=99)  # different init: everything must come from the checkpoint
    result = train_supernet(resumed, tiny_data.train, config, sampler=UniformPaths(tiny_space), checkpoint=ckpt,
                            metadata=meta, progress=False)
    assert result.steps == 24 and len(result.history) == 3
    assert _same_weights(full, resumed)


def test_resume_mid_epoch_from_step_checkpoint(tiny_space, tiny_data, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, seed=4, checkpoint_every_steps=3)
    full = make_supernet(tiny_space, seed=4)
    train_supernet(full, tiny_data.train, config, sampler=UniformPaths(tiny_space), progress=False)
    ckpt = tmp_path / "c.pt"
    partial = make_supernet(tiny_space, seed=4)

    class StopAt(UniformPaths):
        calls = 0

        def sample(self, rng):
            StopAt.calls += 1
            if StopAt.calls == 12:  # one dry call at start, then mid-way through epoch 2 after checkpoint at 9
                raise KeyboardInterrupt
            return super().sample(rng)

    with pytest.raises(KeyboardInterrupt):
        train_supernet(partial, tiny_data.train, config, sampler=StopAt(tiny_space), checkpoint=ckpt, progress=False)
    assert load_checkpoint(ckpt)["step"] == 9
    resumed = make_supernet(tiny_space, seed=0)
    train_supernet(resumed, tiny_data.train, config, sampler=UniformPaths(tiny_space), checkpoint=ckpt,
                   progress=False)
    assert _same_weights(full, resumed)


def test_checkpoint_of_other_space_or_run_is_refused(tiny_space, tiny_data, tmp_path):
    from optuna_kshot import layerwise_space

    ckpt = tmp_path / "c.pt"
    config = TrainConfig(epochs=1)
    train_supernet(make_supernet(tiny_space), tiny_data.train, config, sampler=UniformPaths(tiny_space),
                   checkpoint=ckpt, metadata=supernet_metadata(make_supernet(tiny_space)), progress=False)
    other = layerwise_space(width_mult=0.5, in_channels=1, resolution=28)
    with pytest.raises(CheckpointError, match="trained on the space"):
        train_supernet(make_supernet(other), tiny_data.train, config, sampler=UniformPaths(other),
                       checkpoint=ckpt, metadata=supernet_metadata(make_supernet(other)), progress=False)
    with pytest.raises(CheckpointError, match="another run"):
        train_supernet(make_supernet(tiny_space), tiny_data.train, TrainConfig(epochs=1, lr=0.01),
                       sampler=UniformPaths(tiny_space), checkpoint=ckpt,
                       metadata=supernet_metadata(make_supernet(tiny_space)), progress=False)


def test_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"x": 1})
    assert load_checkpoint(good)["x"] == 1
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an optuna-kshot checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    assert not list(tmp_path.glob("*.tmp"))


class _Payload:
    """Unpickling this runs a command: what a malicious checkpoint would carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_pickled_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "optuna-kshot/1", "space": {"kind": "macro"}, "payload": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="pickled Python objects.*could run code"):
        load_checkpoint(evil)
    assert not marker.exists()
    from optuna_kshot import load_supernet

    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_supernet(evil)
    assert not marker.exists()


def test_checkpoints_hold_only_plain_data(tiny_space, tiny_data, tmp_path):
    """What training writes loads with weights_only=True, K-shot simplex-net optimiser state included."""
    ckpt = tmp_path / "k.pt"
    supernet = make_supernet(tiny_space, "kshot", k=2, warmup_fraction=0.0)
    train_supernet(supernet, tiny_data.train, TrainConfig(epochs=1), sampler=UniformPaths(tiny_space),
                   checkpoint=ckpt, metadata=supernet_metadata(supernet), progress=False)
    state = torch.load(ckpt, weights_only=True)
    assert state["phases"]["simplex"]["state"]  # the simplex-net's Adam moments survive a resume


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tiny_space, tiny_data, tmp_path):
    ckpt = tmp_path / "c.pt"
    meta = supernet_metadata(make_supernet(tiny_space))
    config = TrainConfig(epochs=2, batch_size=64)

    class PoisonAfterFirstEpoch:
        def __init__(self):
            self.calls = 0

        def sample(self, rng):
            self.calls += 1
            return [tiny_space.sample(rng)]

    supernet = make_supernet(tiny_space)

    def poison(record, model):  # after the first epoch's checkpoint, make the weights produce NaN
        with torch.no_grad():
            model.model.classifier.weight.fill_(math.nan)

    with pytest.raises(TrainingDiverged, match="became nan at step 8"):
        train_supernet(supernet, tiny_data.train, config, sampler=PoisonAfterFirstEpoch(), checkpoint=ckpt,
                       metadata=meta, callbacks=[poison], progress=False)
    state = load_checkpoint(ckpt)
    assert state["step"] == 8
    assert torch.isfinite(state["model"]["model.classifier.weight"]).all()
