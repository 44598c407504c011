"""The supernet contract as a reusable pytest suite (like ``optuna.testing.pytest_samplers``).

Subclass :class:`SupernetContractSuite` in a test module of yours and give it three fixtures: ``source`` (a fresh
model of yours with choices, or a built-in space), ``example_input`` (a small batch it takes; None for a
built-in space) and ``data`` (``(train, val)`` splits: ``ArrayDataset``\\ s or torch datasets of
``(input, label)`` pairs, a few dozen items each). Every supernet kind is then checked on it:

- ``export(arch)`` computes exactly what ``supernet(x, arch)`` computes (logits, train and eval mode), before and
  after training;
- parameters off an arch's path get no gradient;
- seeded builds are reproducible;
- a checkpoint round trip rebuilds the same supernet;
- scoring in 4 threads (Optuna ``n_jobs=4``) gives exactly the serial scores (accuracy and loss);
- K-shot with K = 1 trains and scores exactly like the one-shot supernet built from the same source and seed.

Example::

    from optuna_kshot.testing import SupernetContractSuite

    class TestMyNet(SupernetContractSuite):
        @pytest.fixture
        def source(self):
            return MyNet()

        @pytest.fixture
        def example_input(self):
            return torch.randn(2, 3, 32, 32)

        @pytest.fixture
        def data(self):
            return my_small_train_split, my_small_val_split

Restrict the kinds with a class attribute, e.g. ``kinds = ("oneshot", "kshot")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from .choices import OpChoice, Skip
from .searchspace import SearchSpace

__all__ = ["SupernetContractSuite", "KINDS"]

KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "oneshot": ("oneshot", {}),
    "oneshot+stabilizer": ("oneshot", {"stabilizer": True}),
    "kshot": ("kshot", {"k": 2, "warmup_fraction": 0.5}),
    "kshot+stabilizer": ("kshot", {"k": 2, "warmup_fraction": 0.5, "stabilizer": True}),
    "fewshot": ("fewshot", {}),
    "fewshot+stabilizer": ("fewshot", {"stabilizer": True}),
}


def _has_skip(source: Any) -> bool:
    if isinstance(source, SearchSpace):
        return any("skip" in c.options for c in source.choices) and source.kind != "nb201"
    return any(isinstance(m, Skip) for m in source.modules())


def _fewshot_options(source: Any) -> dict[str, Any]:
    if isinstance(source, SearchSpace):
        return {"split": "enn"}
    first = next(m for m in source.modules() if isinstance(m, OpChoice))
    return {"split": f"op:{first.choice_name}", "from_scratch": True}


def _archs(space: SearchSpace, n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def _first_batch(data: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from .loaders import as_split

    return next(iter(as_split(data).batches(n)))


class SupernetContractSuite:
    """The contract tests, parametrised over :data:`KINDS` (restricted by ``kinds``)."""

    kinds: tuple[str, ...] = tuple(KINDS)
    seed = 0

    @pytest.fixture
    def source(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError("Override the `source` fixture: a fresh model with choices, or a built-in space.")

    @pytest.fixture
    def example_input(self) -> torch.Tensor | None:
        return None

    @pytest.fixture
    def data(self) -> tuple[Any, Any]:  # pragma: no cover - overridden
        raise NotImplementedError("Override the `data` fixture: (train, val) splits of a few dozen items.")

    @classmethod
    def pytest_generate_tests(cls, metafunc: pytest.Metafunc) -> None:
        """Parametrise ``kind`` over this suite's kinds (the K = 1 test over its K-shot kinds only)."""
        if "kind" not in metafunc.fixturenames:
            return
        kinds = [k for k in cls.kinds if k in KINDS]
        if metafunc.function.__name__ == "test_k1_equals_oneshot":
            kinds = [k for k in kinds if KINDS[k][0] == "kshot"]
        metafunc.parametrize("kind", kinds)

    # ----------------------------------------------------------------------------------------------- helpers
    def make(self, source: Any, kind: str, example_input: torch.Tensor | None, *, seed: int | None = None,
             **override: Any) -> nn.Module:
        from .supernets import make_supernet

        name, options = KINDS[kind]
        options = {**options, **override}
        if options.get("stabilizer") and not _has_skip(source):
            pytest.skip("no Skip candidate to stabilize")
        if name == "fewshot":
            options = {**_fewshot_options(source), **options}
        return make_supernet(source, name, seed=self.seed if seed is None else seed, example_input=example_input,
                             **options)

    def train(self, supernet: nn.Module, data: tuple[Any, Any], steps: int = 4, checkpoint: Any = None,
              metadata: Mapping[str, Any] | None = None) -> None:
        from .paths import make_path_sampler
        from .training import TrainConfig, train_supernet

        sampler = make_path_sampler("balanced" if supernet.kind == "fewshot" else "uniform", supernet.space,
                               supernet=supernet)
        paths = len(sampler.sample(np.random.default_rng(0)))
        config = TrainConfig(budget_images=steps * 8 * paths, batch_size=8, lr=0.05, seed=self.seed)
        train_supernet(supernet, data[0], config, sampler=sampler, progress=False, checkpoint=checkpoint,
                       metadata=metadata, device="cpu")

    # ------------------------------------------------------------------------------------------------- tests
    def test_is_a_supernet(self, source: Any, kind: str, example_input: torch.Tensor | None) -> None:
        from .supernets import Supernet

        supernet = self.make(source, kind, example_input)
        assert isinstance(supernet, Supernet)
        assert supernet.space.names and supernet.config()["kind"] == KINDS[kind][0]

    def test_export_equals_forward(self, source: Any, kind: str, example_input: torch.Tensor | None,
                                   data: tuple[Any, Any]) -> None:
        supernet = self.make(source, kind, example_input)
        x, _ = _first_batch(data[1], 6)
        for trained in (False, True):
            if trained:
                self.train(supernet, data)
            for mode in (False, True):
                supernet.train(mode)
                for arch in _archs(supernet.space, 4, seed=int(trained)):
                    subnet = supernet.export(arch).train(mode)
                    assert not any(isinstance(m, OpChoice) for m in subnet.modules())
                    with torch.no_grad():
                        torch.testing.assert_close(subnet(x), supernet(x, arch), rtol=0, atol=1e-5)

    def test_off_path_parameters_get_no_gradient(self, source: Any, kind: str,
                                                 example_input: torch.Tensor | None, data: tuple[Any, Any]) -> None:
        supernet = self.make(source, kind, example_input).train()
        x, y = _first_batch(data[0], 6)
        for arch in _archs(supernet.space, 3, seed=5):
            supernet.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(supernet(x, arch), y).backward()
            with_grad = {id(p) for p in supernet.parameters() if p.grad is not None}
            assert with_grad, "no parameter got a gradient"
            group = getattr(supernet, "group", None)
            subs = getattr(supernet, "supernets", None)
            off: list[nn.Parameter] = []
            if subs is not None and group is not None:  # few-shot: other sub-supernets are off the path
                g = group(arch)
                off += [p for i, s in enumerate(subs) if i != g for p in s.parameters()]
            on_path = {id(p) for m in supernet.modules() if isinstance(m, OpChoice)
                       for k, c in m.items() if k == str(arch[m.choice_name]) for p in c.parameters()}
            for m in supernet.modules():
                if isinstance(m, OpChoice):
                    off += [p for k, c in m.items() if k != str(arch[m.choice_name]) for p in c.parameters()
                            if id(p) not in on_path]
            leaked = [tuple(p.shape) for p in off if id(p) in with_grad]
            assert not leaked, f"parameters off the path of {arch} got gradients: {leaked[:5]}"

    def test_seeded_builds_are_reproducible(self, source: Any, kind: str,
                                            example_input: torch.Tensor | None) -> None:
        torch.manual_seed(123)
        expected = torch.rand(1)
        torch.manual_seed(123)
        a = self.make(source, kind, example_input, seed=3)
        assert torch.equal(torch.rand(1), expected), "building a supernet moved torch's global RNG"
        b = self.make(source, kind, example_input, seed=3)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)

    def test_checkpoint_round_trip(self, source: Any, kind: str, example_input: torch.Tensor | None,
                                   data: tuple[Any, Any], tmp_path: Any) -> None:
        from .supernets import load_supernet, supernet_metadata

        supernet = self.make(source, kind, example_input)
        path = tmp_path / "supernet.pt"
        self.train(supernet, data, checkpoint=path, metadata=supernet_metadata(supernet))
        model = None if isinstance(source, SearchSpace) else source
        loaded, space, _ = load_supernet(path, model=model)
        assert space.to_config() == supernet.space.to_config() and loaded.config() == supernet.config()
        supernet.eval()
        x, _ = _first_batch(data[1], 6)
        for arch in _archs(space, 3, seed=2):
            with torch.no_grad():
                assert torch.equal(loaded(x, arch), supernet(x, arch))

    def test_threaded_scoring_equals_serial(self, source: Any, kind: str, example_input: torch.Tensor | None,
                                            data: tuple[Any, Any]) -> None:
        import optuna

        from .evaluation import SupernetEvaluator
        from .objective import SupernetObjective

        supernet = self.make(source, kind, example_input)
        self.train(supernet, data)
        archs = list({supernet.space.key(a): a for a in _archs(supernet.space, 8, seed=9)}.values())

        def evaluator() -> SupernetEvaluator:
            return SupernetEvaluator(supernet, None, data[0], data[1], calib_batches=1, batch_size=16, device="cpu")

        serial = evaluator()
        expected = {serial.space.key(a): (serial.score(a).accuracy, serial.score(a).loss) for a in archs}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        objective = SupernetObjective(evaluator(), objectives=("accuracy",))
        study = objective.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for arch in archs:
            study.enqueue_trial(arch)
        study.optimize(objective, n_trials=len(archs), n_jobs=4)
        got = {t.user_attrs["arch_key"]: (t.user_attrs["accuracy"], t.user_attrs["val_loss"]) for t in study.trials}
        assert got == expected

    def test_k1_equals_oneshot(self, source: Any, kind: str, example_input: torch.Tensor | None,
                               data: tuple[Any, Any]) -> None:
        from .evaluation import SupernetEvaluator

        stab = KINDS[kind][1].get("stabilizer", False)
        oneshot = self.make(source, "oneshot+stabilizer" if stab else "oneshot", example_input)
        k1 = self.make(source, kind, example_input, k=1)
        self.train(oneshot, data)
        self.train(k1, data)
        oneshot.eval()
        k1.eval()
        x, _ = _first_batch(data[1], 6)
        archs = _archs(oneshot.space, 4, seed=4)
        for arch in archs:
            with torch.no_grad():
                assert torch.equal(k1(x, arch), oneshot(x, arch))
        a = SupernetEvaluator(oneshot, None, data[0], data[1], calib_batches=1, batch_size=16, device="cpu")
        b = SupernetEvaluator(k1, None, data[0], data[1], calib_batches=1, batch_size=16, device="cpu")
        for arch in archs:
            assert (a.score(arch).accuracy, a.score(arch).loss) == (b.score(arch).accuracy, b.score(arch).loss)
