"""Late snapshots of one training, and the ensemble evaluator that averages their scores."""

import numpy as np
import pytest
import torch

import optuna_kshot as ok


def _train(space, data, callbacks=()):
    supernet = ok.make_supernet(space, seed=0)
    sampler = ok.make_path_sampler("uniform", space, supernet=supernet)
    config = ok.TrainConfig(epochs=3, batch_size=64, lr=0.05, seed=0)
    ok.train_supernet(supernet, data.train, config, sampler=sampler, progress=False, callbacks=callbacks)
    return supernet


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_snapshots_keep_the_last_epochs_without_changing_the_training(tiny_space, tiny_data):
    snaps = ok.LateSnapshots(keep=2)
    supernet = _train(tiny_space, tiny_data, [snaps])
    assert len(snaps) == 2 and snaps.epochs == [1, 2] and snaps.images == [512 // 64 * 64 * 2, 512 // 64 * 64 * 3]
    assert _same(snaps.models[-1], supernet)  # the newest snapshot is the final weights
    assert not _same(snaps.models[0], supernet)  # the one before is an epoch earlier
    assert _same(_train(tiny_space, tiny_data), supernet)  # the callback changes nothing
    with torch.no_grad():  # copies, not views of the training model
        next(supernet.parameters()).add_(1.0)
    assert not _same(snaps.models[-1], supernet)

    evaluator = snaps.evaluator(tiny_space, tiny_data.train, tiny_data.val, calib_batches=2)
    arch = tiny_space.sample(np.random.default_rng(0))
    score = evaluator.score(arch)
    members = [ok.SupernetEvaluator(m, tiny_space, tiny_data.train, tiny_data.val, calib_batches=2).score(arch)
               for m in snaps.models]
    assert score.extra["member_accuracies"] == [m.accuracy for m in members]
    assert score.accuracy == pytest.approx(sum(m.accuracy for m in members) / 2)
    assert score.loss == pytest.approx(sum(m.loss for m in members) / 2)


def test_a_short_tail_epoch_replaces_the_snapshot_before_it(tiny_space, tiny_data):
    # 8 steps per epoch; 18 steps = 2 full epochs and a tail of 2 steps
    snaps = ok.LateSnapshots(keep=3)
    supernet = ok.make_supernet(tiny_space, seed=0)
    sampler = ok.make_path_sampler("uniform", tiny_space, supernet=supernet)
    config = ok.TrainConfig(budget_images=18 * 64, batch_size=64, lr=0.05, seed=0)
    ok.train_supernet(supernet, tiny_data.train, config, sampler=sampler, progress=False, callbacks=[snaps])
    assert snaps.epochs == [0, 2] and snaps.images == [8 * 64, 18 * 64]
    assert _same(snaps.models[-1], supernet)


def test_snapshots_refuse_bad_settings_and_scoring_before_training(tiny_space, tiny_data):
    with pytest.raises(ValueError, match="`keep` must be >= 1"):
        ok.LateSnapshots(keep=0)
    with pytest.raises(TypeError, match="`keep` must be an int"):
        ok.LateSnapshots(keep=2.5)
    with pytest.raises(ValueError, match="No snapshots yet"):
        ok.LateSnapshots().evaluator(tiny_space, tiny_data.train, tiny_data.val)
    with pytest.raises(ValueError, match="at least one evaluator"):
        ok.EnsembleEvaluator([])
