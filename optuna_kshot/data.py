"""In-memory image datasets: uint8 tensors normalised per batch, with seeded stratified splits.

Loaders: the Fashion-MNIST subset shipped with the package (:func:`load_default`), the original Fashion-MNIST
idx files (:func:`load_fashion_mnist`) and torchvision datasets on disk (:func:`load_torchvision`);
:func:`load_data` picks one from a spec string such as ``"cifar10:/data"``.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "ArrayDataset", "DataSplits", "stratified_split", "load_default", "load_fashion_mnist",
    "load_torchvision", "load_data", "read_fashion_mnist", "DEFAULT_NPZ", "FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES",
]

_logger = logging.getLogger(__name__)

DEFAULT_NPZ = Path(__file__).parent / "_data" / "fashion_mnist_small.npz"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
            "Ankle boot")
# name -> (torchvision class, number of classes, layout of its `.data`)
_TORCHVISION = {
    "cifar10": ("CIFAR10", 10, "nhwc"), "cifar100": ("CIFAR100", 100, "nhwc"), "mnist": ("MNIST", 10, "nhw"),
    "fashion-mnist": ("FashionMNIST", 10, "nhw"), "kmnist": ("KMNIST", 10, "nhw"),
    "svhn": ("SVHN", 10, "nchw"),
}


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, but got {value!r} of type {type(value).__name__}.")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"`{name}` must be {bound}, but got {name}={value}.")
    return int(value)


def _check_tensor(name: str, x: Any, dtype: torch.dtype, ndim: int, shape: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != dtype or x.ndim != ndim:
        got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"`{name}` must be a {dtype} tensor of shape {shape}, but got {got}.")


@dataclass(frozen=True)
class ArrayDataset:
    """uint8 images of shape (N, C, H, W) and int64 labels of shape (N,), on the CPU (or, via :meth:`to`, on the
    device that trains: the training loop and the evaluator place them on CUDA once).

    ``mean`` and ``std`` (one value per channel, in [0, 1] units) normalise each batch as it is taken.
    """

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_tensor("images", self.images, torch.uint8, 4, "(N, C, H, W)")
        _check_tensor("labels", self.labels, torch.int64, 1, "(N,)")
        if len(self.labels) != len(self.images):
            raise ValueError(f"`images` and `labels` must have the same length, but got {len(self.images)} "
                             f"images and {len(self.labels)} labels.")
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if not len(mean) == len(std) == self.images.shape[1] or not all(s > 0 for s in std):
            raise ValueError(f"`mean` and `std` need one value per channel ({self.images.shape[1]}) and "
                             f"`std` must be positive, but got mean={self.mean}, std={self.std}.")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        """Side length of the (square) images."""
        h, w = self.images.shape[2:]
        if h != w:
            raise ValueError(f"The images must be square to have one resolution, but they are {h}x{w}.")
        return int(h)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return images.float().div_(255).sub_(mean).div_(std)

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 images and int64 labels at ``index`` (a 1-D index tensor); CPU tensors."""
        return self._normalise(self.images[index]), self.labels[index]

    def num_batches(self, batch_size: int, *, drop_last: bool = False) -> int:
        batch_size = _check_int("batch_size", batch_size, 1)
        return len(self) // batch_size if drop_last else math.ceil(len(self) / batch_size)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
        device: str | torch.device = "cpu", drop_last: bool = False, start: int = 0,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the data: batches of normalised images ``x`` and labels ``y`` on ``device``.

        The order is the stored order, or with ``shuffle=True`` a permutation drawn from ``generator``
        (required: there is no hidden global RNG) when this method is called. ``start`` skips the first
        ``start`` batches of that order, to resume an epoch.
        """
        count = self.num_batches(batch_size, drop_last=drop_last)
        start = _check_int("start", start, 0)
        if shuffle and not isinstance(generator, torch.Generator):
            raise ValueError("`shuffle=True` needs a `generator`, e.g. torch.Generator().manual_seed(0), "
                             f"but got generator={generator!r}.")
        order = None
        if shuffle:
            order = torch.randperm(len(self), generator=generator, device=generator.device).cpu()
        device = torch.device(device)

        def iterate() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for b in range(start, count):
                index: Any = slice(b * batch_size, (b + 1) * batch_size)
                if order is not None:
                    index = order[index]
                x = self.images[index].to(device, non_blocking=True)
                yield self._normalise(x), self.labels[index].to(device, non_blocking=True)

        return iterate()

    def to(self, device: str | torch.device) -> ArrayDataset:
        """The same data held on ``device`` (placed once: batches are then cut there, with no host copies)."""
        device = torch.device(device)
        if self.images.device == device:
            return self
        return ArrayDataset(self.images.to(device), self.labels.to(device), self.mean, self.std)

    def subset(self, index: torch.Tensor | np.ndarray | Sequence[int] | slice) -> ArrayDataset:
        """A new dataset with the samples at ``index`` (a slice, integer indices or a boolean mask)."""
        if not isinstance(index, slice):
            index = index if isinstance(index, torch.Tensor) else torch.as_tensor(np.asarray(index))
            if index.dtype != torch.bool and (index.is_floating_point() or index.is_complex()):
                raise TypeError(f"`index` must hold integers or booleans, but got dtype {index.dtype}.")
        images, labels = self.images[index].contiguous(), self.labels[index].contiguous()
        return ArrayDataset(images, labels, self.mean, self.std)

    def resized(self, resolution: int) -> ArrayDataset:
        """The same images resized to ``resolution`` x ``resolution`` (area averaging when shrinking), still uint8."""
        resolution = _check_int("resolution", resolution, 1)
        if resolution == self.resolution:
            return self
        x = torch.nn.functional.interpolate(self.images.float(), size=(resolution, resolution),
                                            mode="area" if resolution < self.resolution else "bilinear")
        return ArrayDataset(x.round().clamp(0, 255).to(torch.uint8), self.labels, self.mean, self.std)


@dataclass(frozen=True)
class DataSplits:
    """Train, validation and test splits of one dataset; all share the train split's normalisation.

    The splits are in-memory :class:`ArrayDataset`\\ s (the built-in data), or any torch datasets of
    ``(input, label)`` pairs / ``DataLoader``\\ s (wrapped as :class:`~optuna_kshot.loaders.DatasetSplit`), whose
    ``num_classes`` may then be None (only built-in spaces need it).
    """

    train: Any
    val: Any
    test: Any
    num_classes: int | None
    name: str

    def __post_init__(self) -> None:
        from .loaders import as_split

        for split in ("train", "val", "test"):
            object.__setattr__(self, split, as_split(getattr(self, split)))
        arrays = all(isinstance(getattr(self, s), ArrayDataset) for s in ("train", "val", "test"))
        if self.num_classes is not None or arrays:
            _check_int("num_classes", self.num_classes, 1)
        if not arrays:
            return
        for split in ("train", "val", "test"):
            data = getattr(self, split)
            if data.images.shape[1:] != self.train.images.shape[1:]:
                raise ValueError(f"All splits need images of one shape (C, H, W), but train has "
                                 f"{tuple(self.train.images.shape[1:])} and {split} has "
                                 f"{tuple(data.images.shape[1:])}.")
            if len(data) and not 0 <= int(data.labels.min()) <= int(data.labels.max()) < self.num_classes:
                raise ValueError(f"The {split} labels must be in [0, {self.num_classes - 1}].")

    @property
    def in_channels(self) -> int:
        return self.train.in_channels

    def resized(self, resolution: int) -> DataSplits:
        """Every split resized to ``resolution`` (cheaper ground truth and tests); the name records it."""
        if resolution == self.resolution:
            return self
        return DataSplits(self.train.resized(resolution), self.val.resized(resolution), self.test.resized(resolution),
                          self.num_classes, f"{self.name}@{resolution}px")

    @property
    def resolution(self) -> int:
        return self.train.resolution


def stratified_split(
    labels: torch.Tensor | np.ndarray, *, size: int | None = None, per_class: int | None = None,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified choice of sample indices: ``(chosen, rest)``, both sorted int64 arrays.

    Give either ``size`` (classes keep their proportions; leftover places go to the largest fractions) or
    ``per_class`` (that many of every class). ``seed`` may also be a ``numpy.random.Generator`` to draw from.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if (size is None) == (per_class is None):
        raise ValueError(f"Give exactly one of `size` and `per_class`, but got {size=}, {per_class=}.")
    if per_class is not None:
        smallest = int(counts.min()) if len(counts) else 0
        quota = np.full(len(classes), _check_int("per_class", per_class, 0, smallest))
    else:
        exact = _check_int("size", size, 0, len(labels)) * counts / max(len(labels), 1)
        quota = np.floor(exact).astype(np.int64)
        quota[np.argsort(quota - exact, kind="stable")[: size - int(quota.sum())]] += 1
    rng = np.random.default_rng(seed)
    parts = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota, strict=True)]
    chosen = np.sort(np.concatenate([np.zeros(0, np.int64), *parts])).astype(np.int64)
    keep = np.ones(len(labels), dtype=bool)
    keep[chosen] = False
    return chosen, np.flatnonzero(keep).astype(np.int64)


def _channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of uint8 images (float64, in chunks to bound memory)."""
    c = images.shape[1]
    total, squares = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
        total += x.sum(1)
        squares += x.square().sum(1)
    n = max(images.numel() // max(c, 1), 1)
    mean = total / n
    std = (squares / n - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(s if s > 0 else 1.0 for s in std.tolist())


def _splits(x_train: Any, y_train: Any, x_test: Any, y_test: Any, *, val_size: int, seed: int,
            num_classes: int, name: str) -> DataSplits:
    """Splits from uint8 NCHW images and labels; validation is a stratified part of the training set."""
    if _check_int("val_size", val_size, 1) >= len(y_train):
        raise ValueError(f"`val_size` must be smaller than the number of training images ({len(y_train)}), "
                         f"but got {val_size=}.")
    split = stratified_split(y_train, size=val_size, seed=_check_int("seed", seed, 0))
    val, train = torch.from_numpy(split[0]), torch.from_numpy(split[1])
    x_train, x_test = torch.as_tensor(x_train, dtype=torch.uint8), torch.as_tensor(x_test, dtype=torch.uint8)
    y_train, y_test = torch.as_tensor(y_train, dtype=torch.int64), torch.as_tensor(y_test, dtype=torch.int64)
    mean, std = _channel_stats(x_fit := x_train[train])
    return DataSplits(ArrayDataset(x_fit, y_train[train], mean, std),
                      ArrayDataset(x_train[val], y_train[val], mean, std),
                      ArrayDataset(x_test.contiguous(), y_test, mean, std), num_classes, name)


def load_default() -> DataSplits:
    """The Fashion-MNIST subset shipped with the package: 5000 train, 1000 val and 1000 test images, 28x28."""
    if not DEFAULT_NPZ.is_file():
        raise FileNotFoundError(f"The built-in data file {DEFAULT_NPZ} is missing; reinstall optuna-kshot.")
    with np.load(DEFAULT_NPZ, allow_pickle=False) as z:
        a = {k: torch.from_numpy(z[k]) for k in z.files if k != "provenance"}
    mean, std = _channel_stats(a["images_train"])
    train, val, test = (ArrayDataset(a[f"images_{s}"], a[f"labels_{s}"], mean, std)
                        for s in ("train", "val", "test"))
    return DataSplits(train, val, test, num_classes=10, name="fashion-mnist-small")


def _read_idx(path: Path) -> np.ndarray:
    """The uint8 array in an idx file (raw or gzipped), checked against the dims in its header."""
    raw = path.read_bytes()
    try:
        raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"Cannot read {path}: it is not a complete gzip file ({e}).") from e
    if len(raw) < 4 or raw[:3] != b"\0\0\x08":
        raise ValueError(f"{path} is not an idx file of uint8 data: its magic number is {raw[:4].hex()}.")
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header is incomplete.")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=raw[3], offset=4))
    if len(raw) != header + math.prod(dims):
        raise ValueError(f"{path} is {'truncated' if len(raw) < header + math.prod(dims) else 'corrupt'}: "
                         f"its header declares shape {dims}, but it has {len(raw) - header} data bytes.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def read_fashion_mnist(directory: str | os.PathLike | None) -> tuple[np.ndarray, ...]:
    """(train images NCHW, train labels, test images, test labels) from the Fashion-MNIST idx files in ``directory``
    (default: where the Debian package dataset-fashion-mnist puts them), as uint8/int arrays."""
    folder = Path(FASHION_MNIST_DIR if directory is None else directory)
    hint = (f"Install it with `apt-get install dataset-fashion-mnist` (files in {FASHION_MNIST_DIR}) "
            "or pass the directory holding the idx files.")
    if not folder.is_dir():
        raise FileNotFoundError(f"The Fashion-MNIST directory {folder} does not exist. {hint}")
    paths = {n: next((p for p in (folder / n, folder / f"{n}.gz") if p.is_file()), None) for n in _IDX_FILES}
    missing = [n for n, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{folder} lacks the Fashion-MNIST file(s) {', '.join(missing)} "
                                f"(raw or .gz). {hint}")
    arrays = [_read_idx(p) for p in paths.values()]
    for p, a, ndim in zip(paths.values(), arrays, (3, 1, 3, 1), strict=True):
        if a.ndim != ndim:
            raise ValueError(f"{p} should hold an array with {ndim} dims, but holds one of shape {a.shape}.")
    for images, labels, name in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "t10k")):
        if len(images) != len(labels) or (len(labels) and labels.max() > 9):
            raise ValueError(f"The {name} files in {folder} disagree: {len(images)} images, "
                             f"{len(labels)} labels (labels must be in 0..9).")
    return arrays[0][:, None], arrays[1], arrays[2][:, None], arrays[3]


def load_fashion_mnist(directory: str | os.PathLike | None = None, *, val_size: int = 10000,
                       seed: int = 0) -> DataSplits:
    """Fashion-MNIST from its original idx files (default: where the Debian package puts them).

    Validation is a stratified subset of ``val_size`` images of the 60k training file chosen with ``seed``;
    train is the rest and test the t10k file. Normalisation statistics come from the train split.
    """
    x_train, y_train, x_test, y_test = read_fashion_mnist(directory)
    return _splits(x_train, y_train, x_test, y_test, val_size=val_size, seed=seed, num_classes=10,
                   name="fashion-mnist")


def load_torchvision(name: str, root: str | os.PathLike, *, download: bool = False, val_size: int = 5000,
                     seed: int = 0) -> DataSplits:
    """A torchvision dataset: ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``, ``kmnist`` or ``svhn``.

    Validation is a stratified subset of ``val_size`` training images chosen with ``seed``; test is the
    official test split. Nothing is downloaded unless ``download=True``.
    """
    key = str(name).lower().replace("_", "-")
    if key not in _TORCHVISION:
        raise ValueError(f"`name` must be one of {sorted(_TORCHVISION)}, but got {name!r}.")
    if not download and not Path(root).is_dir():
        raise FileNotFoundError(f"The {key} directory {root} does not exist. Give the directory that holds the "
                                f"torchvision dataset (command line: --data {key}:DIR; Python: "
                                f"load_torchvision({key!r}, DIR), or download=True to let torchvision fetch it).")
    import torchvision.datasets

    cls_name, num_classes, layout = _TORCHVISION[key]
    arrays: list[Any] = []
    for train in (True, False):
        kwargs = {"split": "train" if train else "test"} if key == "svhn" else {"train": train}
        try:
            ds = getattr(torchvision.datasets, cls_name)(str(root), download=download, **kwargs)
        except RuntimeError as e:
            if "not found" not in str(e).lower():
                raise
            raise FileNotFoundError(f"{cls_name} was not found in {root} ({e}). Give the directory torchvision "
                                    f"stored it in (command line: --data {key}:DIR; Python: "
                                    "load_torchvision(..., download=True) fetches it).") from e
        x = torch.as_tensor(np.asarray(ds.data))
        x = x.unsqueeze(1) if layout == "nhw" else x.permute(0, 3, 1, 2) if layout == "nhwc" else x
        labels = ds.labels if key == "svhn" else ds.targets
        arrays += [x.contiguous(), np.asarray(labels, dtype=np.int64)]
    _logger.info("Loaded %s from %s: %d train and %d test images.", key, root, len(arrays[1]), len(arrays[3]))
    return _splits(*arrays, val_size=val_size, seed=seed, num_classes=num_classes, name=key)


def load_data(spec: str) -> DataSplits:
    """Data from a spec: ``"default"``, ``"fashion-mnist"``, ``"fashion-mnist:DIR"``, ``"cifar10:DIR"``, or
    ``"package.module:function"``, a function of yours that returns :class:`DataSplits` or ``(train, val[, test])``
    torch datasets."""
    if not isinstance(spec, str):
        raise TypeError(f"`spec` must be a str, but got {type(spec).__name__}.")
    name, sep, directory = spec.strip().partition(":")
    if sep and name.lower().replace("_", "-") not in {*_TORCHVISION, "default"}:
        from .userspec import data_from_spec

        return data_from_spec(spec.strip())
    name = name.lower().replace("_", "-")
    if name == "default" and not sep:
        return load_default()
    if name == "fashion-mnist":
        return load_fashion_mnist(directory or None)
    if name in _TORCHVISION and directory:
        return load_torchvision(name, directory)
    others = "|".join(k for k in _TORCHVISION if k != "fashion-mnist")
    raise ValueError(f"Unknown data spec {spec!r}. Use 'default' (built-in subset), 'fashion-mnist' or "
                     f"'fashion-mnist:DIR' (idx files), '{{{others}}}:DIR' (torchvision data in DIR), or "
                     "'package.module:function' (a function of yours returning the splits).")
