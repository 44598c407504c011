"""The device-agnostic code on CUDA (skipped where no GPU is present)."""

import pytest
import torch

import optuna_kshot as ok

from .user_models import SmallResNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(("kind", "options"), [("oneshot", {}), ("kshot", {"k": 2}), ("fewshot", {"thresholds": [6]})])
def test_train_score_export_on_cuda_match_cpu(kind, options, tiny_space, tiny_data):
    config = ok.TrainConfig(epochs=1, seed=0)
    scores = {}
    for device in ("cpu", "cuda"):
        supernet = ok.make_supernet(tiny_space, kind, seed=0, **options)
        sampler = ok.make_path_sampler(ok.default_path_sampler(supernet), tiny_space, supernet=supernet)
        ok.train_supernet(supernet, tiny_data.train, config, sampler=sampler, device=device, progress=False)
        evaluator = ok.SupernetEvaluator(supernet, None, tiny_data.train, tiny_data.val, calib_batches=1, device=device)
        arch = tiny_space.sample(3)
        scores[device] = evaluator.score(arch)
        x = next(iter(tiny_data.val.batches(8, device=device)))[0]
        supernet.eval()
        with torch.no_grad():
            torch.testing.assert_close(supernet.export(arch).to(device).eval()(x), supernet(x, arch), rtol=0,
                                       atol=1e-4)
    assert scores["cuda"].loss == pytest.approx(scores["cpu"].loss, abs=5e-3)


def test_user_model_and_costs_on_cuda(tiny_data):
    supernet = ok.make_supernet(SmallResNet(), "kshot", k=2, example_input=torch.zeros(1, 1, 28, 28)).to("cuda")
    ok.train_supernet(supernet, tiny_data.train, ok.TrainConfig(epochs=1), sampler=ok.UniformPaths(supernet.space),
                      device="cuda", progress=False)
    evaluator = ok.SupernetEvaluator(supernet, None, tiny_data.train, tiny_data.val, calib_batches=1, device="cuda")
    arch = supernet.space.sample(0)
    assert 0 <= evaluator.score(arch).accuracy <= 1
    assert evaluator.costs(arch)["MACs"] > 0
