"""Models of "a user's own" with choices, for the contract suite and the user-model tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import optuna_kshot as ok


def conv_bn(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class WidthConv(nn.Module):
    """An elastic block of the user's: a 3x3 conv to up to ``hidden`` channels (the arch's ``width`` share of
    them), ReLU, a 1x1 conv back. It reads a ValueChoice and cuts out its static version."""

    def __init__(self, c: int, hidden: int, widths: tuple[float, ...]) -> None:
        super().__init__()
        self.c, self.hidden = c, hidden
        self.width = ok.ValueChoice("width", widths)
        self.conv1 = nn.Conv2d(c, hidden, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(hidden, c, 1, bias=False)

    def channels(self, width: float) -> int:
        return max(1, int(round(self.hidden * width)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.channels(self.width.value)
        return F.conv2d(self.act(F.conv2d(x, self.conv1.weight[:h], padding=1)), self.conv2.weight[:, :h])

    @torch.no_grad()
    def to_static(self, arch: dict) -> nn.Module:
        h = self.channels(arch["width"])
        out = nn.Sequential(nn.Conv2d(self.c, h, 3, padding=1, bias=False), nn.ReLU(),
                            nn.Conv2d(h, self.c, 1, bias=False))
        out[0].weight.copy_(self.conv1.weight[:h])
        out[2].weight.copy_(self.conv2.weight[:, :h])
        return out.train(self.training)


class SmallResNet(nn.Module):
    """A ResNet-style CNN with two candidate blocks and a skip per stage, a decision shared by two blocks, a
    choice nested in a candidate, and an elastic width block."""

    def __init__(self, c: int = 8, classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, c, 3)
        self.stage1 = ok.OpChoice("stage1", {"conv3": Residual(conv_bn(c, c, 3)),
                                             "conv5": Residual(conv_bn(c, c, 5)), "skip": ok.Skip()})
        self.down = conv_bn(c, 2 * c, 3)
        c *= 2
        self.stage2 = nn.Sequential(*[
            ok.OpChoice("stage2", {"conv3": Residual(conv_bn(c, c, 3)), "skip": ok.Skip()}) for _ in range(2)
        ])  # one decision for both blocks
        self.stage3 = ok.OpChoice("stage3", {
            "bottleneck": Residual(nn.Sequential(conv_bn(c, c // 2, 1), ok.OpChoice(
                "stage3_kernel", {"k3": conv_bn(c // 2, c // 2, 3), "k5": conv_bn(c // 2, c // 2, 5)}),
                conv_bn(c // 2, c, 1))),
            "wide": Residual(WidthConv(c, 2 * c, (0.5, 1.0))),
            "skip": ok.Skip(),
        })
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage1(x)
        x = self.down(F.max_pool2d(x, 2))
        x = self.stage3(self.stage2(x))
        return self.head(x.mean((2, 3)))


class MLP(nn.Module):
    """A small non-convolutional model: flattened images through chosen fully connected blocks."""

    def __init__(self, features: int = 196, hidden: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.inp = nn.Linear(features, hidden)
        self.l1 = ok.OpChoice("l1", {"relu": nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU()),
                                     "gelu": nn.Sequential(nn.Linear(hidden, hidden), nn.GELU()), "skip": ok.Skip()})
        self.l2 = ok.OpChoice("l2", {
            "wide": nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden)),
            "narrow": nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, hidden)),
            "skip": ok.Skip(),
        })
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.l2(self.l1(torch.relu(self.inp(x))))))


class FlatImages(Dataset):
    """A torch Dataset of flattened, normalised images (from an ArrayDataset), resized to ``size``."""

    def __init__(self, data: ok.ArrayDataset, size: int = 14) -> None:
        self.x = data.resized(size).take(torch.arange(len(data)))[0].flatten(1)
        self.y = data.labels

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


class AugmentedImages(Dataset):
    """Built-in Fashion-MNIST images as a torch Dataset with torchvision augmentation (random crop, flip)."""

    def __init__(self, data: ok.ArrayDataset, augment: bool = True) -> None:
        from torchvision.transforms import v2

        self.x, self.y = data.take(torch.arange(len(data)))
        self.transform = v2.Compose([v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip()]) if augment else None

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.x[i]
        return (self.transform(x) if self.transform is not None else x), int(self.y[i])


def small_fashion() -> tuple[Dataset, Dataset]:
    """``--data tests.user_models:small_fashion``: 256 augmented training and 128 validation images."""
    data = ok.load_default()
    return (AugmentedImages(data.train.subset(torch.arange(256))),
            AugmentedImages(data.val.subset(torch.arange(128)), augment=False))
