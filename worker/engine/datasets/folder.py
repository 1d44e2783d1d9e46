"""Any image folder in torchvision's ImageFolder layout, read lazily (a `LoaderBundle`), confined to the data dir.

`<data_dir>/<path>/train/<class>/*.png` and `.../test/<class>/...` (or `val/`). Classes are the sorted
sub-folder names of `train/` (hidden ones, starting with ".", are not classes); a class folder's images are
found at any depth, as torchvision's ImageFolder finds them; every image is converted to RGB (16-bit grayscale
scaled to 8 bits, not clipped) and resized to the first training image's size. Every folder and file must
resolve inside the data directory: a symlink out of it is refused, wherever it sits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from prunescope.contract.config import data_dir_relative

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
STATS_SAMPLE = 256  # images read to estimate the channel mean/std


def confined(data_dir: Path, path: str) -> Path:
    """`data_dir / path`, refusing anything that resolves outside `data_dir` (`..`, absolute paths, symlinks)."""
    if not data_dir_relative(path):
        raise ValueError(f"dataset.path {path!r} must be a relative path inside the data directory")
    try:
        return _inside(Path(data_dir).resolve(), Path(data_dir).resolve() / path)
    except ValueError:
        raise ValueError(f"dataset.path {path!r} leads outside the data directory") from None


def _open_rgb(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # an optional dependency: only image folders need it
        raise RuntimeError("dataset 'image_folder' needs Pillow: pip install 'prunescope[images]'") from exc
    with Image.open(path) as opened:
        image: Image.Image = opened
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
            # 16-bit (or 32-bit integer) grayscale: convert("RGB") clips every value above 255 to white.
            wide = np.asarray(image, dtype=np.float64)
            top = 65535.0 if image.mode.startswith("I;16") else max(float(wide.max()), 1.0)
            image = Image.fromarray(np.clip(wide / top * 255.0, 0, 255).astype(np.uint8), mode="L")
        rgb = image.convert("RGB")
        if size is not None and rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


class ImageFiles(Dataset[tuple[torch.Tensor, int]]):
    """Decodes one image per item: (normalised (3, H, W) float32 tensor, class index)."""

    def __init__(self, files: list[tuple[Path, int]], size: tuple[int, int], mean: torch.Tensor,
                 std: torch.Tensor) -> None:
        self.files, self.size, self.mean, self.std = files, size, mean, std

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[index]
        pixels = torch.from_numpy(_open_rgb(path, self.size).copy()).permute(2, 0, 1).float() / 255.0
        return (pixels - self.mean) / self.std, label


def _inside(root: Path, path: Path) -> Path:
    """`path` resolved, refused when a symlink on the way leads outside the data directory `root`."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{path} leads outside the data directory (a symlink to {resolved})")
    return resolved


def _listing(root: Path, split: Path, classes: list[str]) -> list[tuple[Path, int]]:
    files = []
    for index, name in enumerate(classes):
        folder = split / name
        if not folder.is_dir():
            continue
        _inside(root, folder)
        found = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
        files += [(_inside(root, p), index) for p in found]
    return files


def image_folder(data_dir: Path, path: str) -> tuple[ImageFiles, ImageFiles, tuple[int, int, int], int]:
    """(train set, test set, input shape, classes) of the image folder at `data_dir / path`."""
    root = confined(data_dir, path)
    inside = Path(data_dir).resolve()
    train_dir = root / "train"
    test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise FileNotFoundError(f"{root} needs train/ and test/ (or val/) folders with one sub-folder per class")
    _inside(inside, train_dir)
    _inside(inside, test_dir)
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = sorted({p.name for p in test_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
                     - set(classes))
    if unknown:
        raise ValueError(f"{test_dir} has classes {unknown} that train/ does not have")
    train, test = _listing(inside, train_dir, classes), _listing(inside, test_dir, classes)
    empty = sorted(set(classes) - {classes[label] for _, label in train})
    if empty:
        raise ValueError(f"{train_dir}: class folders {empty} hold no image")
    if len(classes) < 2 or not train or not test:
        raise ValueError(f"{root}: need at least 2 classes and images in both train/ and {test_dir.name}/")
    first = _open_rgb(train[0][0], None)
    size = (first.shape[1], first.shape[0])  # PIL sizes are (width, height)
    sample = [train[i][0] for i in np.linspace(0, len(train) - 1, min(STATS_SAMPLE, len(train))).astype(int)]
    pixels = np.stack([_open_rgb(p, size) for p in sample]).astype(np.float32) / 255.0
    mean = torch.from_numpy(pixels.mean(axis=(0, 1, 2))).view(3, 1, 1)
    std = torch.from_numpy(pixels.std(axis=(0, 1, 2))).clamp_min(1e-3).view(3, 1, 1)
    shape = (3, size[1], size[0])
    return ImageFiles(train, size, mean, std), ImageFiles(test, size, mean, std), shape, len(classes)
