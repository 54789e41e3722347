"""`load_dataset`: any `--data` spec as one in-memory `ImageDataset` (uint8 NCHW, served as float in [-1, 1])."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch.utils.data import Dataset

from stylelens.datasets.cifar10 import read_cifar10
from stylelens.datasets.folder import convert_arrays, read_image_folder
from stylelens.datasets.idx import read_idx_dataset
from stylelens.datasets.shapes import make_shapes
from stylelens.datasets.specs import CHANNELS, RESOLUTION_RANGE, UNLABELED, DataSpec, check_split, parse_data_spec
from stylelens.errors import StylelensError


@dataclass(eq=False, repr=False)
class ImageDataset(Dataset):
    """Images held as uint8 NCHW and served as float32 in [-1, 1] with int64 labels (-1 for unlabeled images)."""

    pixels: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    spec: str
    split: str = 'train'

    def __repr__(self) -> str:
        return (f'ImageDataset({self.spec!r}, split={self.split!r}, {len(self)} images, '
                f'{self.channels}x{self.resolution}x{self.resolution})')

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_float(self.pixels[index]), self.labels[index]

    @cached_property
    def images(self) -> torch.Tensor:
        """All images as one float32 NCHW tensor in [-1, 1], made on first use and kept."""
        return to_float(self.pixels)

    @property
    def resolution(self) -> int:
        return self.pixels.shape[-1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[1]

    @property
    def num_classes(self) -> int:
        """Number of classes of the dataset (0 when unlabeled), also when a spec keeps only some of them."""
        return len(self.class_names)

    def class_counts(self) -> dict[str, int]:
        """Images per class name, in class order, only for classes present."""
        counts = torch.bincount(self.labels[self.labels >= 0], minlength=self.num_classes).tolist()
        return {name: n for name, n in zip(self.class_names, counts) if n}


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1] (0 -> -1, 255 -> 1), the range the generators produce."""
    return pixels.float().div_(127.5).sub_(1)


def _check_options(kind: str, split: str, resolution: int | None, channels: int | None) -> None:
    """Refuse an unknown split, channel count or resolution, naming the valid choices."""
    check_split(split, kind)
    if channels not in (None, *CHANNELS):
        raise StylelensError(f'unknown channel count {channels!r}; valid: 1 (grayscale), 3 (RGB), or none to keep '
                             f'the native count')
    low, high = RESOLUTION_RANGE
    if resolution is not None and not (isinstance(resolution, int) and low <= resolution <= high):
        raise StylelensError(f'bad resolution {resolution!r}; valid: an integer from {low} to {high} (e.g. 28, 32, '
                             f'64), or none to keep the native size')


def _read_labeled(spec: DataSpec, split: str, resolution: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Read (or, for shapes, draw at `resolution`, default 32) a labeled dataset and keep only the spec's
    classes."""
    if spec.kind == 'shapes':
        pixels, labels = make_shapes(int(spec.path.name), resolution or 32, split)
    else:
        reader = read_cifar10 if spec.kind == 'cifar10' else read_idx_dataset
        pixels, labels = reader(spec.path, split)
    if spec.classes is None:
        return pixels, labels
    keep = np.isin(labels, spec.classes)
    if not keep.any():
        names = ', '.join(spec.class_names[i] for i in spec.classes)
        raise StylelensError(f'{spec.path} has no {split} images of class {names}')
    return pixels[keep], labels[keep]


def load_dataset(spec: str, split: str = 'train', resolution: int | None = None,
                 channels: int | None = None) -> ImageDataset:
    """Load a ``--data`` spec whole into memory, resized to ``resolution`` and converted to ``channels`` (1 or 3)
    when given, else at native size and channel count."""
    parsed = parse_data_spec(spec)
    _check_options(parsed.kind, split, resolution, channels)
    if parsed.kind == 'folder':
        pixels = read_image_folder(parsed.path, resolution, channels)
        labels = np.full(len(pixels), UNLABELED, dtype=np.int64)
    else:
        pixels, labels = _read_labeled(parsed, split, resolution)
        pixels = convert_arrays(pixels, resolution, channels)
    nchw = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
    return ImageDataset(nchw, torch.from_numpy(labels), parsed.class_names, spec, split)
