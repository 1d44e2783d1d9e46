"""MNIST and Fashion-MNIST from IDX files in torchvision's layout (`<data_dir>/MNIST/raw/*-ubyte.gz`)."""

from __future__ import annotations

import gzip
import shutil
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def read_idx(path: Path) -> np.ndarray:
    """Read one (optionally gzipped) IDX file: big-endian header, dims, then unsigned bytes."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a cut download, a file that is not gzip
        raise ValueError(f"{path} is damaged ({type(exc).__name__}: {exc}); download it again") from exc
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


def mnist_like(name: str, data_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, test_x, test_y), images normalised, (N, 1, 28, 28)."""
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

    return images("train"), labels("train"), images("test"), labels("test")
