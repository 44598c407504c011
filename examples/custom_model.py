"""Your own network as a search space: a ResNet-style CNN with choices, searched by an existing Optuna study.

1. Mark the searchable parts of your model with `ok.OpChoice` (and `ok.Skip` for "no block"); your `forward`
   stays plain PyTorch.
2. `ok.make_supernet(model, kind, example_input=...)` discovers the search space and makes a weight-sharing
   supernet of your model (here K-shot; "oneshot" and "fewshot" work the same way).
3. Train it on Fashion-MNIST through a torchvision `Dataset` with augmentation.
4. Add it as the objective of an existing study: NSGA-II on accuracy vs MACs under a MACs budget.
5. Export the most accurate feasible arch and load it back without this file's code (a `torch.export` program).

    python examples/custom_model.py            # about 5 minutes on 2 CPU cores
    python examples/custom_model.py --smoke    # seconds (what the test suite runs)

Fashion-MNIST comes from the Debian package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`);
without it the example uses the 7,000-image subset that ships with optuna-kshot.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
from torch import nn

import optuna_kshot as ok

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


# ------------------------------------------------------------------------------------------------ the model
def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU())


class BasicBlock(nn.Module):
    """Two convolutions with a residual connection."""

    def __init__(self, c: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(c, c, kernel)
        self.conv2 = nn.Sequential(nn.Conv2d(c, c, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand, with a residual connection."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c // 2, 1), conv_bn(c // 2, c // 2, 3),
                                  nn.Conv2d(c // 2, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class ResNetish(nn.Module):
    """Three stages; every block picks a basic 3x3 block, a basic 5x5 block, a bottleneck, or no block."""

    def __init__(self, width: int = 16, blocks_per_stage: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(1, width, 3)
        stages = []
        c = width
        for s in range(3):
            layers: list[nn.Module] = [conv_bn(c, 2 * c, 3, stride=2)] if s else []
            c = 2 * c if s else c
            for b in range(blocks_per_stage):
                layers.append(ok.OpChoice(f"stage{s}_block{b}", {
                    "basic3": BasicBlock(c, 3), "basic5": BasicBlock(c, 5), "bottleneck": Bottleneck(c),
                    "skip": ok.Skip(),
                }))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


# ------------------------------------------------------------------------------------------------- the data
def fashion_mnist(root: Path, smoke: bool) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """Train (augmented) and validation splits as torchvision datasets."""
    import torchvision
    from torchvision.transforms import v2

    normalize = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize((0.286,), (0.353,))]
    augment = v2.Compose([v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip(), *normalize])
    plain = v2.Compose(normalize)
    if (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file():
        raw = root / "FashionMNIST" / "raw"  # the layout torchvision.datasets.FashionMNIST reads
        raw.mkdir(parents=True, exist_ok=True)
        for gz in DEBIAN_DIR.glob("*-ubyte.gz"):
            target = raw / gz.name[:-3]
            if not target.is_file():
                with gzip.open(gz) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        train = torchvision.datasets.FashionMNIST(str(root), train=True, transform=augment)
        val = torchvision.datasets.FashionMNIST(str(root), train=True, transform=plain)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
        n_train, n_val = (512, 256) if smoke else (20_000, 2_000)
        return (torch.utils.data.Subset(train, order[:n_train].tolist()),
                torch.utils.data.Subset(val, order[-n_val:].tolist()))
    print(f"{DEBIAN_DIR} not found (apt-get install dataset-fashion-mnist): using the built-in subset")
    data = ok.load_default()

    class Images(torch.utils.data.Dataset):
        def __init__(self, split: ok.ArrayDataset, transform: v2.Transform) -> None:
            self.split, self.transform = split, transform

        def __len__(self) -> int:
            return min(len(self.split), 512) if smoke else len(self.split)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return self.transform(self.split.images[i]), int(self.split.labels[i])

    return Images(data.train, augment), Images(data.val, plain)


# --------------------------------------------------------------------------------------------------- the run
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for tests")
    parser.add_argument("--out", default=None, help="working directory (default: a temporary one)")
    args = parser.parse_args()
    torch.manual_seed(0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out or tempfile.mkdtemp())
    train, val = fashion_mnist(out / "data", args.smoke)

    model = ResNetish(width=8 if args.smoke else 16, blocks_per_stage=1 if args.smoke else 2)
    supernet = ok.make_supernet(model, "kshot", k=2, example_input=torch.zeros(1, 1, 28, 28))
    print(f"search space: {len(supernet.space)} choices, {supernet.space.size:,} archs: "
          + ", ".join(f"{c.name}={list(c.options)}" for c in supernet.space.choices[:2]) + ", ...")

    config = ok.TrainConfig(epochs=1 if args.smoke else 3, batch_size=64, lr=0.05)
    result = ok.train_supernet(supernet, train, config, sampler=ok.UniformPaths(supernet.space),
                               progress=not args.smoke)
    print(f"supernet trained: {result.images:,} images, {result.seconds:.0f} s, "
          f"last epoch loss {result.history[-1].loss:.3f}")

    # The user's existing study, created elsewhere.
    storage = f"sqlite:///{out / 'study.db'}"
    optuna.create_study(storage=storage, study_name="my-resnet", directions=["maximize", "minimize"])

    evaluator = ok.SupernetEvaluator(supernet, None, train, val, calib_batches=2 if args.smoke else 4)
    full_macs = evaluator.costs({c.name: c.options[1] for c in supernet.space.choices})["MACs"]  # all basic5
    objective = ok.SupernetObjective(evaluator, objectives=("accuracy", "macs"), max_macs=0.6 * full_macs)
    study = optuna.load_study(study_name="my-resnet", storage=storage,
                              sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=8))
    objective.prepare(study)  # checks the directions, names the metrics
    study.optimize(objective, n_trials=8 if args.smoke else 60)

    best = ok.pick_trial(study)  # the most accurate feasible Pareto-optimal trial
    print(f"{len(study.trials)} trials; best feasible accuracy {best.values[0]:.4f} at {best.values[1]:,.0f} MACs "
          f"(budget {0.6 * full_macs:,.0f})")
    print(f"arch: {best.params}")

    subnet = evaluator.subnet(best.params, deploy=True)  # plain nn.Module: chosen blocks, inherited weights
    directory = ok.save_subnet(subnet, supernet.space, best.params, out / "subnet",
                               example_input=supernet.example_input())
    # Loads in a fresh interpreter that has never seen ResNetish: a torch.export program.
    check = (f"import optuna_kshot as ok, torch; m = ok.load_subnet({str(directory)!r}); "
             "print('reloaded without the model code:', tuple(m(torch.zeros(2, 1, 28, 28)).shape))")
    print(subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir()).stdout.strip())


if __name__ == "__main__":
    main()
