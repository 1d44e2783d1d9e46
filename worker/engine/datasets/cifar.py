"""CIFAR-10 and CIFAR-100 from their standard python archives, extracted into the data directory."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
# dataset -> (folder, training files, test file, label key, classes, mean, std)
LAYOUTS: dict[str, tuple[str, list[str], str, bytes, int, tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels", 10,
                CIFAR_MEAN, CIFAR_STD),
    "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels", 100, CIFAR100_MEAN, CIFAR100_STD),
}
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of bytes, lists and numpy arrays) and refuses every other class."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which is not allowed")


def _batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        try:
            batch = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{path} is not a CIFAR python batch: {exc}") from exc
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path} is not a CIFAR python batch: it needs b'data' and {label_key!r}")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def load_cifar(name: str, data_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(train_x, train_y, test_x, test_y, classes): normalised (N, 3, 32, 32) float32 images."""
    folder_name, train_files, test_file, label_key, classes, mean_rgb, std_rgb = LAYOUTS[name]
    folder = data_dir / folder_name
    missing = [n for n in [*train_files, test_file] if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"{name} files {missing} not found in {folder}: extract {ARCHIVES[name]} "
            "(https://www.cs.toronto.edu/~kriz/cifar.html) into the data directory (PRUNESCOPE_DATA_DIR)."
        )
    parts = [_batch(folder / n, label_key) for n in train_files]
    test_data, test_labels = _batch(folder / test_file, label_key)
    if max(int(p[1].max(initial=0)) for p in [*parts, (test_data, test_labels)]) >= classes:
        raise ValueError(f"{folder}: a label is ≥ {classes}, which {name} does not have")
    mean = torch.tensor(mean_rgb).view(1, 3, 1, 1)
    std = torch.tensor(std_rgb).view(1, 3, 1, 1)

    def images(data: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(data.astype(np.float32) / 255.0) - mean) / std

    train_x = images(np.concatenate([p[0] for p in parts]))
    train_y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return train_x, train_y, images(test_data), torch.from_numpy(test_labels), classes
