"""MNIST and Fashion-MNIST in the official IDX format, gzipped or not."""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from stylelens.datasets.specs import check_split
from stylelens.errors import StylelensError

IDX_PREFIXES = {'train': 'train', 'test': 't10k'}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_GZIP_MAGIC = b'\x1f\x8b'


def _read_maybe_gzipped(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic (whatever its name says)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise StylelensError(f'cannot gunzip {path} ({err}): truncated download?') from None


def _idx_payload(path: Path, magic: int, dims: int) -> tuple[tuple[int, ...], bytes]:
    """Check an IDX file's magic number and size; return its dimensions and its data bytes."""
    raw = _read_maybe_gzipped(Path(path))
    header = 4 * (1 + dims)
    if len(raw) < header:
        raise StylelensError(f'{path} is not an IDX file: only {len(raw)} bytes, shorter than its header')
    found, *shape = struct.unpack(f'>{1 + dims}I', raw[:header])
    if found != magic:
        what = 'image' if magic == IDX_IMAGES_MAGIC else 'label'
        raise StylelensError(f'{path} is not an IDX {what} file: magic number 0x{found:08x}, expected '
                             f'0x{magic:08x}')
    payload = raw[header:]
    if len(payload) != int(np.prod(shape)):
        raise StylelensError(f"{path} holds {len(payload)} data bytes but its header promises "
                             f"{' x '.join(map(str, shape))} = {int(np.prod(shape))}: truncated or damaged")
    return tuple(shape), payload


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX image file (``*-images-idx3-ubyte[.gz]``) as uint8 [N, H, W]."""
    shape, payload = _idx_payload(path, IDX_IMAGES_MAGIC, 3)
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape).copy()


def read_idx_labels(path: Path, num_classes: int = 10) -> np.ndarray:
    """An IDX label file (``*-labels-idx1-ubyte[.gz]``) as int64 [N], each checked to lie in 0..num_classes-1."""
    _, payload = _idx_payload(path, IDX_LABELS_MAGIC, 1)
    labels = np.frombuffer(payload, dtype=np.uint8).astype(np.int64)
    if labels.size and labels.max() >= num_classes:
        raise StylelensError(f'{path} has label {labels.max()}; labels must lie in 0-{num_classes - 1}')
    return labels


def _idx_file(folder: Path, stem: str) -> Path:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists."""
    for candidate in (folder / stem, folder / f'{stem}.gz'):
        if candidate.is_file():
            return candidate
    raise StylelensError(f'{folder} has no {stem} or {stem}.gz (the official IDX files; `stylelens data download '
                         f'mnist` or `fashion-mnist` fetches them)')


def read_idx_dataset(folder: Path, split: str = 'train') -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST from a folder of official IDX files: uint8 NHWC (C = 1) and labels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StylelensError(f'{folder} is not a folder: give the folder holding the IDX files '
                             f'(train-images-idx3-ubyte.gz, ...)')
    check_split(split, 'mnist/fashion-mnist')
    prefix = IDX_PREFIXES[split]
    images_path = _idx_file(folder, f'{prefix}-images-idx3-ubyte')
    labels_path = _idx_file(folder, f'{prefix}-labels-idx1-ubyte')
    images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise StylelensError(f'{images_path.name} has {len(images)} images but {labels_path.name} has '
                             f'{len(labels)} labels')
    return images[..., None], labels


# ---------------------------------------------------------------------------------------------------------- images
