import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from optuna_kshot.data import (
    DEFAULT_NPZ,
    FASHION_MNIST_DIR,
    ArrayDataset,
    DataSplits,
    load_data,
    load_default,
    load_fashion_mnist,
    load_torchvision,
    stratified_split,
)

torch.set_num_threads(1)

needs_debian = pytest.mark.skipif(
    not Path(FASHION_MNIST_DIR).is_dir(),
    reason=f"{FASHION_MNIST_DIR} is absent (apt-get install dataset-fashion-mnist)",
)
IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
       "t10k-labels-idx1-ubyte")


def write_idx(path: Path, array: np.ndarray) -> None:
    raw = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def fake_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose first two pixels encode their index, so samples can be traced through the splits."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    return images, (np.arange(n) % 10).astype(np.uint8)


def index_of(images: torch.Tensor) -> np.ndarray:
    return images[:, 0, 0, 0].numpy().astype(np.int64) + 256 * images[:, 0, 0, 1].numpy().astype(np.int64)


def write_fake(directory: Path, n_train: int, n_test: int) -> Path:
    """Fashion-MNIST-format idx files, the train images gzipped and the rest raw."""
    directory.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = fake_arrays(n_train, 0), fake_arrays(n_test, 1)
    for name, array in zip(IDX, (x_train, y_train, x_test, y_test), strict=True):
        write_idx(directory / (name + ".gz" if name.startswith("train-images") else name), array)
    return directory


@pytest.fixture
def fake_dir(tmp_path: Path) -> Path:
    return write_fake(tmp_path / "fashion", 300, 100)


def make_dataset(n: int = 103, channels: int = 1) -> ArrayDataset:
    images = torch.randint(0, 256, (n, channels, 8, 8), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n), mean=(0.5,) * channels, std=(0.25,) * channels)


# ------------------------------------------------------------------------------------------- built-in data
def test_load_default_shapes_counts_and_balance():
    data = load_default()
    assert data.name == "fashion-mnist-small" and data.num_classes == 10
    assert (data.in_channels, data.resolution) == (1, 28)
    for split, n in (("train", 5000), ("val", 1000), ("test", 1000)):
        ds = getattr(data, split)
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.labels.shape == (n,) and ds.labels.dtype == torch.int64
        assert torch.bincount(ds.labels, minlength=10).tolist() == [n // 10] * 10
        assert ds.mean == data.train.mean and ds.std == data.train.std
    assert data.train.mean[0] == pytest.approx(0.286, abs=0.01)
    assert data.train.std[0] == pytest.approx(0.353, abs=0.01)


def test_shipped_provenance():
    with np.load(DEFAULT_NPZ, allow_pickle=False) as z:
        provenance = json.loads(str(z["provenance"]))
        assert set(z.files) == {"provenance"} | {f"{k}_{s}" for k in ("images", "labels")
                                                 for s in ("train", "val", "test")}
    assert provenance["license"] == "MIT" and "Zalando" in provenance["source"]
    assert provenance["counts"] == {"train": 5000, "val": 1000, "test": 1000}
    assert len(provenance["classes"]) == 10
    assert (DEFAULT_NPZ.parent / "LICENSE-fashion-mnist.txt").is_file()
    assert DEFAULT_NPZ.stat().st_size < 8_000_000


def _build_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "make_default_npz.py"
    spec = importlib.util.spec_from_file_location("make_default_npz", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_default_npz


make_default_npz = _build_script()


@needs_debian
def test_make_default_npz_reproduces_the_shipped_file(tmp_path):
    out = tmp_path / "rebuilt.npz"
    make_default_npz(FASHION_MNIST_DIR, out)
    with np.load(out) as new, np.load(DEFAULT_NPZ) as shipped:
        assert set(new.files) == set(shipped.files)
        for key in new.files:
            if key != "provenance":
                np.testing.assert_array_equal(new[key], shipped[key], err_msg=key)
        made, kept = json.loads(str(new["provenance"])), json.loads(str(shipped["provenance"]))
        assert {k: v for k, v in made.items() if k != "made_by"} == {k: v for k, v in kept.items() if k != "made_by"}


def test_make_default_npz_splits_are_disjoint_and_stratified(fake_dir, tmp_path):
    out = tmp_path / "small.npz"
    make_default_npz(fake_dir, out, train_per_class=12, val_per_class=5, test_per_class=3, seed=1)
    with np.load(out) as z:
        train, val, test = (index_of(torch.from_numpy(z[f"images_{s}"])) for s in ("train", "val", "test"))
        assert z["images_train"].shape == (120, 1, 28, 28) and z["images_train"].dtype == np.uint8
        assert z["labels_val"].dtype == np.int64
        assert np.bincount(z["labels_val"]).tolist() == [5] * 10
        np.testing.assert_array_equal(z["labels_train"], train % 10)
    assert len(set(train)) == 120 and len(set(val)) == 50 and len(set(test)) == 30
    assert not set(train) & set(val)
    with pytest.raises(ValueError, match="per_class"):
        make_default_npz(fake_dir, out, train_per_class=30, val_per_class=5)


# ----------------------------------------------------------------------------------------- Fashion-MNIST
@needs_debian
def test_load_fashion_mnist_from_the_debian_files():
    data = load_fashion_mnist(val_size=10000)
    assert (len(data.train), len(data.val), len(data.test)) == (50000, 10000, 10000)
    assert torch.bincount(data.val.labels).tolist() == [1000] * 10
    assert torch.bincount(data.train.labels).tolist() == [5000] * 10
    assert data.train.mean[0] == pytest.approx(0.286, abs=0.005)
    assert data.train.std[0] == pytest.approx(0.353, abs=0.005)


def test_load_fashion_mnist_split_is_seeded_disjoint_and_complete(fake_dir):
    data = load_fashion_mnist(fake_dir, val_size=50, seed=3)
    train, val = index_of(data.train.images), index_of(data.val.images)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(300))
    assert torch.bincount(data.val.labels).tolist() == [5] * 10
    np.testing.assert_array_equal(data.val.labels.numpy(), val % 10)
    assert np.array_equal(index_of(load_fashion_mnist(fake_dir, val_size=50, seed=3).val.images), val)
    assert not np.array_equal(index_of(load_fashion_mnist(fake_dir, val_size=50, seed=4).val.images), val)
    assert len(data.test) == 100 and data.name == "fashion-mnist"
    with pytest.raises(ValueError, match="val_size"):
        load_fashion_mnist(fake_dir, val_size=300)


def test_missing_directory_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_missing_files_are_named(fake_dir):
    (fake_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*apt-get install dataset-fashion"):
        load_fashion_mnist(fake_dir)


def test_truncated_raw_idx_file(fake_dir):
    path = fake_dir / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*truncated"):
        load_fashion_mnist(fake_dir)


def test_truncated_gzip_idx_file(fake_dir):
    path = fake_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        load_fashion_mnist(fake_dir)


def test_bad_magic_number(fake_dir):
    path = fake_dir / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x01" + path.read_bytes()[4:])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.*magic"):
        load_fashion_mnist(fake_dir)


@needs_debian
def test_truncated_copy_of_a_real_file(tmp_path):
    for name in IDX[:3]:
        (tmp_path / f"{name}.gz").symlink_to(Path(FASHION_MNIST_DIR) / f"{name}.gz")
    raw = gzip.decompress((Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte is truncated"):
        load_fashion_mnist(tmp_path)


# ------------------------------------------------------------------------------------------------ batches
def test_batches_are_deterministic_given_the_generator():
    ds = make_dataset()
    a = [y for _, y in ds.batches(10, shuffle=True, generator=torch.Generator().manual_seed(5))]
    b = [y for _, y in ds.batches(10, shuffle=True, generator=torch.Generator().manual_seed(5))]
    c = [y for _, y in ds.batches(10, shuffle=True, generator=torch.Generator().manual_seed(6))]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(torch.cat(a), torch.cat(c))


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_cover_every_sample_once(shuffle):
    ds = make_dataset(103)
    batches = list(ds.batches(10, shuffle=shuffle, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == ds.num_batches(10) == 11 and len(batches[-1][1]) == 3
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(103))
    generator = torch.Generator().manual_seed(0)
    dropped = list(ds.batches(10, shuffle=shuffle, generator=generator, drop_last=True))
    assert len(dropped) == ds.num_batches(10, drop_last=True) == 10
    assert all(len(y) == 10 for _, y in dropped)


def test_start_skips_the_first_batches():
    ds = make_dataset()
    full = list(ds.batches(8, shuffle=True, generator=torch.Generator().manual_seed(1), drop_last=True))
    resumed = list(ds.batches(8, shuffle=True, generator=torch.Generator().manual_seed(1), drop_last=True,
                              start=4))
    assert len(resumed) == len(full) - 4
    for (x1, y1), (x2, y2) in zip(full[4:], resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert list(ds.batches(8, start=100)) == []


def test_batches_match_take_and_normalise():
    data = load_default().train
    x = torch.cat([x for x, _ in data.batches(1024)])
    assert x.dtype == torch.float32 and x.shape == (5000, 1, 28, 28)
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-4) and float(x.std()) == pytest.approx(1.0, abs=1e-3)
    index = torch.tensor([3, 0, 4999])
    xt, yt = data.take(index)
    assert torch.allclose(xt, x[index]) and torch.equal(yt, data.labels[index])
    assert torch.allclose(xt, (data.images[index].float() / 255 - data.mean[0]) / data.std[0], atol=1e-6)


def test_batches_validate_their_arguments():
    ds = make_dataset()
    with pytest.raises(ValueError, match="generator"):
        ds.batches(10, shuffle=True)
    with pytest.raises(ValueError, match="batch_size"):
        ds.batches(0)
    with pytest.raises(TypeError, match="batch_size"):
        ds.num_batches(2.5)
    with pytest.raises(ValueError, match="start"):
        ds.batches(10, start=-1)


# ----------------------------------------------------------------------------------- datasets and splits
def test_array_dataset_validation_and_subset():
    ds = make_dataset(20, channels=3)
    assert (len(ds), ds.in_channels, ds.resolution) == (20, 3, 8)
    sub = ds.subset(torch.tensor([5, 1]))
    assert sub.labels.tolist() == [5, 1] and sub.mean == ds.mean
    assert len(ds.subset(np.arange(20) % 2 == 0)) == 10 and len(ds.subset(slice(0, 4))) == 4
    with pytest.raises(TypeError, match="integers or booleans"):
        ds.subset(torch.tensor([0.5]))
    with pytest.raises(TypeError, match="uint8"):
        ArrayDataset(ds.images.float(), ds.labels, ds.mean, ds.std)
    with pytest.raises(TypeError, match="int64"):
        ArrayDataset(ds.images, ds.labels.int(), ds.mean, ds.std)
    with pytest.raises(ValueError, match="same length"):
        ArrayDataset(ds.images, ds.labels[:5], ds.mean, ds.std)
    with pytest.raises(ValueError, match="one value per channel"):
        ArrayDataset(ds.images, ds.labels, (0.5,), (0.2,))
    with pytest.raises(ValueError, match="square"):
        _ = ArrayDataset(ds.images[:, :, :4], ds.labels, ds.mean, ds.std).resolution


def test_data_splits_validation():
    ds = make_dataset(20)
    with pytest.raises(ValueError, match="labels must be in"):
        DataSplits(ds, ds, ds, num_classes=10, name="x")
    with pytest.raises(ValueError, match="one shape"):
        DataSplits(ds, make_dataset(20, channels=3), ds, num_classes=20, name="x")


def test_stratified_split():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    chosen, rest = stratified_split(labels, size=10, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [5, 3, 2]
    assert sorted(np.concatenate([chosen, rest]).tolist()) == list(range(100))
    assert np.array_equal(chosen, stratified_split(labels, size=10, seed=0)[0])
    assert np.bincount(labels[stratified_split(labels, size=7, seed=0)[0]]).sum() == 7
    assert np.bincount(labels[stratified_split(labels, per_class=4, seed=1)[0]]).tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="per_class"):
        stratified_split(labels, per_class=21)
    with pytest.raises(ValueError, match="exactly one"):
        stratified_split(labels, size=3, per_class=1)


# ---------------------------------------------------------------------------------- torchvision and specs
def write_fake_mnist(root: Path, n_train: int = 200, n_test: int = 40) -> None:
    """Files in the layout torchvision's MNIST class reads (uncompressed idx files in MNIST/raw)."""
    write_fake(root / "MNIST" / "raw", n_train, n_test)
    for name in IDX[:1]:
        path = root / "MNIST" / "raw" / f"{name}.gz"
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()


def test_load_torchvision_reads_real_format_files(tmp_path):
    write_fake_mnist(tmp_path)
    data = load_torchvision("mnist", tmp_path, val_size=20, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (180, 20, 40)
    assert data.train.images.shape[1:] == (1, 28, 28) and data.name == "mnist"
    assert torch.bincount(data.val.labels).tolist() == [2] * 10
    assert not set(index_of(data.train.images)) & set(index_of(data.val.images))


def test_load_torchvision_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_torchvision("cifar10", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_torchvision("cifar10", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded
    with pytest.raises(ValueError, match="cifar100"):
        load_torchvision("imagenet", tmp_path)


def test_load_data_specs(tmp_path):
    assert load_data("default").name == "fashion-mnist-small"
    fashion = load_data(f"fashion-mnist:{write_fake(tmp_path / 'fashion', 10_050, 20)}")
    assert fashion.name == "fashion-mnist" and (len(fashion.train), len(fashion.val)) == (50, 10_000)
    write_fake_mnist(tmp_path / "tv", 5_030, 20)
    mnist = load_data(f"MNIST:{tmp_path / 'tv'}")
    assert mnist.name == "mnist" and (len(mnist.train), len(mnist.val)) == (30, 5_000)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_data(f"cifar10:{tmp_path / 'nowhere'}")
    for bad in ("foo", "cifar10", "default:x", "mnist:"):
        with pytest.raises(ValueError, match="fashion-mnist:DIR"):
            load_data(bad)
    with pytest.raises(TypeError):
        load_data(None)


def test_resized_keeps_labels_and_content():
    data = load_default()
    small = data.resized(14)
    assert small.resolution == 14 and small.name.endswith("@14px")
    assert torch.equal(small.train.labels, data.train.labels)
    assert small.train.images.dtype == torch.uint8
    # area averaging keeps each image's mean brightness
    big = data.train.images[:50].float().mean((1, 2, 3))
    assert torch.allclose(small.train.images[:50].float().mean((1, 2, 3)), big, atol=1.0)
    assert data.resized(28) is data
