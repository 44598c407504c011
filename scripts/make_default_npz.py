"""Build the Fashion-MNIST subset that ships in the package (optuna_kshot/_data/fashion_mnist_small.npz) from the
original idx files, as seeded stratified subsets. A build script, not library code:

    python scripts/make_default_npz.py [IDX_DIR] [OUT]

(defaults: the Debian package dataset-fashion-mnist's directory, and the package's data file). The shipped file's
provenance names the function's earlier home, ``optuna_kshot.data.make_default_npz``; the arrays are what this
script writes (tested).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from optuna_kshot.data import (
    DEFAULT_NPZ,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    read_fashion_mnist,
    stratified_split,
)


def make_default_npz(source_dir: str | os.PathLike, out_path: str | os.PathLike, *,
                     train_per_class: int = 500, val_per_class: int = 100, test_per_class: int = 100,
                     seed: int = 0) -> None:
    """Build the shipped data file from the Fashion-MNIST idx files as seeded stratified subsets.

    Train and val are disjoint subsets of the 60k training file, test a subset of t10k. The file holds
    uint8 images (N, 1, 28, 28) and int64 labels per split, plus a JSON ``provenance`` string.
    """
    x_train, y_train, x_test, y_test = read_fashion_mnist(source_dir)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, but got {seed!r}.")
    rng = np.random.default_rng(seed)
    val, rest = stratified_split(y_train, per_class=val_per_class, seed=rng)
    train = rest[stratified_split(y_train[rest], per_class=train_per_class, seed=rng)[0]]
    test, _ = stratified_split(y_test, per_class=test_per_class, seed=rng)
    out: dict[str, np.ndarray] = {}
    for split, images, labels, index in (("train", x_train, y_train, train), ("val", x_train, y_train, val),
                                         ("test", x_test, y_test, test)):
        out[f"images_{split}"], out[f"labels_{split}"] = images[index], labels[index].astype(np.int64)
    provenance = {
        "name": "fashion-mnist-small", "made_by": "optuna_kshot.data.make_default_npz",
        "source": "Fashion-MNIST by Zalando Research (https://github.com/zalandoresearch/fashion-mnist), "
                  "idx files from the Debian package dataset-fashion-mnist",
        "license": "MIT", "seed": seed, "classes": list(FASHION_MNIST_CLASSES),
        "per_class": {"train": train_per_class, "val": val_per_class, "test": test_per_class},
        "counts": {s: len(out[f"labels_{s}"]) for s in ("train", "val", "test")},
    }
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "wb") as f:
        np.savez_compressed(f, **out, provenance=np.array(json.dumps(provenance)))
    print(f"wrote {out_path} with {provenance['counts']} images")


if __name__ == "__main__":
    make_default_npz(sys.argv[1] if len(sys.argv) > 1 else FASHION_MNIST_DIR,
                     sys.argv[2] if len(sys.argv) > 2 else DEFAULT_NPZ)
