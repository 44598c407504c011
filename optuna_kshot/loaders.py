"""Any ``torch.utils.data.Dataset`` (or ``DataLoader``) as a data split of the training loop and the evaluator.

The built-in data are in-memory :class:`~optuna_kshot.data.ArrayDataset`\\ s (the fast path); a
:class:`DatasetSplit` wraps your own dataset, transforms and augmentation included, behind the same interface:
seeded shuffling from the loop's generator (so a resumed run sees the same order), batches moved to the device
(pinned memory on CUDA), and ``subset`` for calibration sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Subset

__all__ = ["DatasetSplit", "as_split", "on_device"]


class DatasetSplit:
    """A map-style ``Dataset`` whose items are ``(input, label)`` pairs, as a split.

    Args:
        dataset: the dataset (its ``__getitem__`` runs its transforms, augmentation included).
        num_workers: DataLoader worker processes (0: load in the main process).
        collate_fn: how items become a batch (default: ``torch.utils.data.default_collate``).

    Random augmentation draws from torch's RNG (per worker process when ``num_workers > 0``), not from the
    loop's seed: a resumed run sees the same images in the same order but may augment them differently.
    """

    def __init__(self, dataset: Dataset, *, num_workers: int = 0, collate_fn: Callable[[list[Any]], Any] | None = None):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"Expected a map-style torch Dataset (with __getitem__ and __len__), but got "
                            f"{type(dataset).__name__}.")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"`num_workers` must be an int >= 0, but got {num_workers!r}.")
        self.dataset = dataset
        self.num_workers = num_workers
        self.collate_fn = collate_fn

    def __len__(self) -> int:
        return len(self.dataset)

    def num_batches(self, batch_size: int, *, drop_last: bool = False) -> int:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int, but got {batch_size!r}.")
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def _sample(self) -> Any:
        if len(self) == 0:
            raise ValueError("The dataset is empty.")
        return self.dataset[0][0]

    @property
    def in_channels(self) -> int:
        return int(torch.as_tensor(self._sample()).shape[0])

    @property
    def resolution(self) -> int:
        shape = torch.as_tensor(self._sample()).shape
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(f"The inputs are not square images (C, H, W), but of shape {tuple(shape)}.")
        return int(shape[1])

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
        device: str | torch.device = "cpu", drop_last: bool = False, start: int = 0,
    ) -> Iterator[tuple[Any, torch.Tensor]]:
        """One pass: ``(x, y)`` batches on ``device``, in stored order or a permutation drawn from ``generator``;
        ``start`` skips the first batches of that order (to resume an epoch)."""
        if shuffle and not isinstance(generator, torch.Generator):
            raise ValueError("`shuffle=True` needs a `generator`, e.g. torch.Generator().manual_seed(0).")
        n = len(self)
        order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
        batches = list(BatchSampler(order, batch_size, drop_last))[start:]
        device = torch.device(device)
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            collate_fn=self.collate_fn, pin_memory=device.type == "cuda")

        def iterate() -> Iterator[tuple[Any, torch.Tensor]]:
            for x, y in loader:
                yield _to(x, device), torch.as_tensor(y).to(device, non_blocking=True)

        return iterate()

    def subset(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> DatasetSplit:
        index = torch.as_tensor(np.asarray(index)).tolist()
        return DatasetSplit(Subset(self.dataset, index), num_workers=self.num_workers, collate_fn=self.collate_fn)


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, (list, tuple)):
        return type(x)(_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def as_split(data: Any) -> Any:
    """``data`` as a split: an :class:`~optuna_kshot.data.ArrayDataset` or :class:`DatasetSplit` as it is, a
    ``DataLoader`` as its dataset with its workers and collate function (the loop sets batch size and order),
    any other map-style ``Dataset`` wrapped."""
    from .data import ArrayDataset

    if isinstance(data, (ArrayDataset, DatasetSplit)):
        return data
    if isinstance(data, DataLoader):
        return DatasetSplit(data.dataset, num_workers=data.num_workers, collate_fn=data.collate_fn)
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return DatasetSplit(data)
    raise TypeError(f"Expected training/validation data as an ArrayDataset, a torch Dataset or a DataLoader, but "
                    f"got {type(data).__name__}.")


def on_device(data: Any, device: torch.device) -> Any:
    """In-memory data placed on a CUDA device once (uint8 images: 47 MB for all of Fashion-MNIST), so batches are
    cut there without a host copy each; other data stay where they are (their loader pins memory)."""
    from .data import ArrayDataset

    return data.to(device) if torch.device(device).type == "cuda" and isinstance(data, ArrayDataset) else data
