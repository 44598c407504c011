"""The ranking-stability monitor: probes in every kind's training, history in the checkpoint, stop rule, verdict."""

import pytest
import torch

import optuna_kshot as ok
from optuna_kshot.checkpoint import load_checkpoint
from optuna_kshot.monitor import RankingMonitor, probe_archs, verdict

KINDS = [("oneshot", {}), ("kshot", {"k": 2}), ("fewshot", {"split": "enn", "thresholds": [6]}),
         ("oneshot", {"stabilizer": True})]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "options"), KINDS, ids=["oneshot", "kshot", "fewshot", "oneshot+stab"])
def test_monitor_runs_in_every_kind_and_its_history_survives_a_resume(kind, options, tiny_space, tiny_data, tmp_path):
    supernet = ok.make_supernet(tiny_space, kind, **options)
    sampler = ok.make_path_sampler("balanced" if kind == "fewshot" else "uniform", tiny_space, supernet=supernet)
    config = ok.TrainConfig(epochs=3, batch_size=64)
    ckpt = tmp_path / "s.pt"
    meta = ok.supernet_metadata(supernet)

    class Killed(Exception):
        pass

    def kill_after_second_epoch(record, model):
        if record.epoch == 1:
            raise Killed

    monitor = RankingMonitor(tiny_data.train, tiny_data.val, probes=6, val_images=64, calib_images=64, every=1)
    with pytest.raises(Killed):
        ok.train_supernet(supernet, tiny_data.train, config, sampler=sampler, checkpoint=ckpt, metadata=meta,
                          monitor=monitor, callbacks=[kill_after_second_epoch], progress=False)
    assert len(load_checkpoint(ckpt)["monitor"]["history"]) == 2
    resumed_monitor = RankingMonitor(tiny_data.train, tiny_data.val, probes=6, val_images=64, calib_images=64,
                                     every=1)
    result = ok.train_supernet(ok.make_supernet(tiny_space, kind, **options), tiny_data.train, config,
                               sampler=sampler, checkpoint=ckpt, metadata=meta, monitor=resumed_monitor,
                               progress=False)
    checks = resumed_monitor.history
    assert [c.epoch for c in checks] == [0, 1, 2]
    assert checks[0].tau_prev is None and all(c.tau_prev is not None for c in checks[1:])
    assert set(checks[-1].tau_free) == {"macs", "params", "enn"}
    assert all(len(c.scores) == 6 and all(0 <= s <= 1 for s in c.scores) for c in checks)
    assert "probe_tau_prev" in result.history[-1].extra and "probe_tau_macs" in result.history[0].extra
    assert len(load_checkpoint(ckpt)["monitor"]["history"]) == 3


def test_stop_rule_ends_training_early_and_a_rerun_does_not_train_on(tiny_space, tiny_data, tmp_path):
    supernet = ok.make_supernet(tiny_space)
    config = ok.TrainConfig(epochs=8, batch_size=64)
    ckpt = tmp_path / "s.pt"
    meta = ok.supernet_metadata(supernet)

    def monitor():  # every check counts as stable: stop after the 2nd check that has a previous one
        return RankingMonitor(tiny_data.train, tiny_data.val, probes=4, val_images=32, calib_images=32, every=1,
                              stop_tau=-1.0, stop_checks=2)

    result = ok.train_supernet(supernet, tiny_data.train, config, sampler=ok.UniformPaths(tiny_space),
                               checkpoint=ckpt, metadata=meta, monitor=monitor(), progress=False)
    assert result.stopped_early and len(result.history) == 3 and result.steps == 3 * 8
    state = load_checkpoint(ckpt)
    assert state["stopped_early"] and state["complete"]
    again = ok.train_supernet(ok.make_supernet(tiny_space), tiny_data.train, config,
                              sampler=ok.UniformPaths(tiny_space), checkpoint=ckpt, metadata=meta,
                              monitor=monitor(), progress=False)
    assert again.steps == result.steps and again.stopped_early


def test_a_short_last_epoch_is_compared_with_the_check_before(tiny_space, tiny_data):
    """A budget that ends a few steps into an epoch checks after them; comparing that check with the one a few
    steps earlier would give tau ~1 and read as a stable ranking, so it is compared with the check before."""
    from optuna_kshot.monitor import ProbeCheck, kendall

    supernet = ok.make_supernet(tiny_space)
    ok.train_supernet(supernet, tiny_data.train, ok.TrainConfig(epochs=2, batch_size=64),
                      sampler=ok.UniformPaths(tiny_space), progress=False)

    def monitor():  # two earlier checks 512 images apart, ranking the probes in opposite orders
        m = RankingMonitor(tiny_data.train, tiny_data.val, probes=5, val_images=64, calib_images=64, every=1)
        m.history = [ProbeCheck(0, 512, [0.1, 0.2, 0.3, 0.4, 0.5], None, {}, 0.0),
                     ProbeCheck(1, 1024, [0.5, 0.4, 0.3, 0.2, 0.1], -1.0, {}, 0.0)]
        return m

    m = monitor()
    tail = m.check(supernet, 2, 1024 + 128)  # a quarter of an interval later
    assert tail.tau_prev == kendall(m.history[0].scores, tail.scores) != kendall(m.history[1].scores, tail.scores)
    m = monitor()
    full = m.check(supernet, 2, 1536)  # a whole interval later: the last check is the one to compare with
    assert full.tau_prev == kendall(m.history[1].scores, full.scores)


def test_default_check_interval_keeps_the_monitor_cheap(default_data, tiny_data):
    """Checks cost at most ~5% of training: every epoch of full-size data, every few of a small set."""
    assert RankingMonitor(default_data.train, default_data.val).every == 5  # 5,000 images: 8 x 384 per check
    big = default_data.train.subset(torch.arange(5000).repeat(10))  # 50,000 images
    assert RankingMonitor(big, default_data.val).every == 1
    assert RankingMonitor(tiny_data.train, tiny_data.val, every=3).every == 3


def test_probes_spread_over_enn_and_macs(tiny_space):
    supernet = ok.make_supernet(tiny_space)
    archs = probe_archs(supernet, 8, seed=0)
    assert len({tiny_space.key(a) for a in archs}) == 8
    assert len({ok.enn(tiny_space, a) for a in archs}) >= 2
    assert len({tiny_space.count_macs(a) for a in archs}) >= 6
    assert probe_archs(supernet, 8, seed=0) == archs
    with pytest.raises(ValueError, match="at least 3"):
        RankingMonitor(torch.zeros(1), torch.zeros(1), probes=2)


def test_verdict_says_when_the_ranking_is_worth_no_more_than_a_free_predictor():
    macs_like = [{"epoch": 3, "images": 1, "scores": [0.1, 0.2, 0.3], "tau_prev": 0.95,
                  "tau_free": {"macs": 0.97, "enn": 0.5}, "seconds": 1.0}]
    assert any("almost exactly as MACs" in line and "0.97" in line for line in verdict(macs_like))
    moving = [{**macs_like[0], "tau_prev": 0.2, "tau_free": {"macs": 0.3}}]
    assert any("still moving" in line and "0.20" in line for line in verdict(moving))
    fine = [{**macs_like[0], "tau_prev": 0.9, "tau_free": {"macs": 0.4}}]
    assert verdict(fine) == []
    truth = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    scores = {"a": 0.5, "b": 0.6, "c": 0.4, "d": 0.3}
    free = {"macs": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}}
    lines = verdict(fine, truth=truth, supernet_scores=scores, free=free)
    assert any("no better than macs alone (1.00)" in line for line in lines)
