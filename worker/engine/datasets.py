"""Datasets as in-memory tensors (N, C, H, W) float32 + int64 labels, batched by index in the loop."""

from __future__ import annotations

import gzip
import pickle
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from worker.engine.networks import CONV_MODELS

MNIST_MIRRORS = {
    "mnist": ("MNIST", ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                        "https://storage.googleapis.com/cvdf-datasets/mnist/"]),
    "fashion_mnist": ("FashionMNIST", ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]),
}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Channel statistics of the training sets, so inputs are roughly zero-mean, unit-variance.
NORMALIZATION = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class DataBundle:
    """Train/test tensors and what the model needs to know about them."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    input_shape: tuple[int, int, int]
    num_classes: int


def load_dataset(dataset_cfg: dict, data_dir: Path, *, model_name: str) -> DataBundle:
    """Load `dataset_cfg["name"]` shaped for `model_name`; `limit` keeps the first N training samples."""
    name = dataset_cfg.get("name", "digits")
    if name == "digits":
        bundle = _digits(upsample=model_name in CONV_MODELS)
    elif name in MNIST_MIRRORS:
        bundle = _mnist_like(name, Path(data_dir))
    elif name == "cifar10":
        bundle = _cifar10(Path(data_dir))
    elif name == "synthetic":
        shape = (3, 32, 32) if model_name == "small_cnn" else (1, 28, 28)
        bundle = synthetic_bundle(shape)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose digits, mnist, fashion_mnist, cifar10 or synthetic")
    limit = dataset_cfg.get("limit")
    if limit is not None:
        bundle.train_x, bundle.train_y = bundle.train_x[:limit], bundle.train_y[:limit]
    return bundle


def synthetic_bundle(shape: tuple[int, int, int], *, n_train: int = 1024, n_test: int = 256,
                     num_classes: int = 10, seed: int = 1234) -> DataBundle:
    """Deterministic, learnable random data: a fixed prototype per class plus noise."""
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(num_classes, *shape, generator=gen)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, num_classes, (n,), generator=gen)
        x = prototypes[y] + 1.5 * torch.randn(n, *shape, generator=gen)
        return x, y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return DataBundle(train_x, train_y, test_x, test_y, shape, num_classes)


def _digits(*, upsample: bool) -> DataBundle:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    if upsample:
        # Conv models (5x5 kernels, two poolings) need ≥ 28x28: scale the 8x8 digits up like MNIST.
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    order = torch.from_numpy(np.random.RandomState(0).permutation(len(y)))  # fixed split, any seed
    x, y = x[order], y[order]
    n_test = len(y) // 5
    return DataBundle(x[n_test:], y[n_test:], x[:n_test], y[:n_test], tuple(x.shape[1:]), 10)  # type: ignore[arg-type]


def read_idx(path: Path) -> np.ndarray:
    """Read one (optionally gzipped) IDX file: big-endian header, dims, then unsigned bytes."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - offset != expected:
        raise ValueError(f"{path}: header says {dims} ({expected} bytes), file has {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _download(urls: list[str], filename: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for base in urls:
        tmp = target.with_suffix(target.suffix + ".part")
        try:
            with urllib.request.urlopen(base + filename, timeout=30) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
            tmp.replace(target)
            return
        except OSError as exc:
            errors.append(f"{base}{filename}: {exc}")
            tmp.unlink(missing_ok=True)
    raise FileNotFoundError(
        f"{target} is missing and could not be downloaded ({'; '.join(errors)}). "
        f"Put {filename} into {target.parent} (torchvision layout) or set PRUNESCOPE_DATA_DIR."
    )


def _mnist_like(name: str, data_dir: Path) -> DataBundle:
    folder, mirrors = MNIST_MIRRORS[name]
    raw = data_dir / folder / "raw"
    arrays = {}
    for split, files in IDX_FILES.items():
        for filename in files:
            path = raw / filename
            if not path.exists():
                _download(mirrors, filename, path)
            arrays[(split, "labels" if "labels" in filename else "images")] = read_idx(path)
    mean, std = NORMALIZATION[name]

    def images(split: str) -> torch.Tensor:
        x = torch.from_numpy(arrays[(split, "images")].astype(np.float32) / 255.0).unsqueeze(1)
        return (x - mean) / std

    def labels(split: str) -> torch.Tensor:
        return torch.from_numpy(arrays[(split, "labels")].astype(np.int64))

    train_x = images("train")
    return DataBundle(train_x, labels("train"), images("test"), labels("test"),
                      tuple(train_x.shape[1:]), 10)  # type: ignore[arg-type]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of bytes, lists and numpy arrays) and refuses every other class."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which is not allowed")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        try:
            batch = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{path} is not a CIFAR-10 python batch: {exc}") from exc
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(batch[b"labels"], dtype=np.int64)


def _cifar10(data_dir: Path) -> DataBundle:
    folder = data_dir / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 batches {missing} not found in {folder}: extract cifar-10-python.tar.gz "
            "(https://www.cs.toronto.edu/~kriz/cifar.html) into the data directory."
        )
    parts = [_cifar_batch(folder / n) for n in names[:5]]
    test_data, test_labels = _cifar_batch(folder / "test_batch")
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

    def images(data: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(data.astype(np.float32) / 255.0) - mean) / std

    train_x = images(np.concatenate([p[0] for p in parts]))
    train_y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return DataBundle(train_x, train_y, images(test_data), torch.from_numpy(test_labels), (3, 32, 32), 10)
