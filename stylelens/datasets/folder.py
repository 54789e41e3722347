"""Image folders and the one pixel conversion (crop, resize, channels) every source shares."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stylelens.errors import StylelensError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
_MODES = {1: 'L', 3: 'RGB'}


def _to_array(image: Image.Image, resolution: int | None, mode: str) -> np.ndarray:
    """One image as uint8 HWC in ``mode`` ('L' or 'RGB'), center-cropped to a square, resized (antialiased)."""
    image = image.convert(mode)
    side = min(image.size)
    if image.size != (side, side):
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if resolution is not None and side != resolution:
        image = image.resize((resolution, resolution), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def convert_arrays(pixels: np.ndarray, resolution: int | None, channels: int | None) -> np.ndarray:
    """Square (center crop), resize and/or change the channels of uint8 NHWC images with PIL; returned unchanged
    when they are square and nothing else is asked."""
    native, height, width = pixels.shape[-1], pixels.shape[1], pixels.shape[2]
    if height == width and resolution in (None, height) and channels in (None, native):
        return pixels
    mode = _MODES[channels or native]
    return np.stack([_to_array(Image.fromarray(p[..., 0] if native == 1 else p), resolution, mode) for p in pixels])


def _image_files(folder: Path) -> list[Path]:
    """Every .png/.jpg/.jpeg under ``folder`` (recursive), sorted by relative path."""
    if not folder.is_dir():
        raise StylelensError(f'{folder} is not a folder of images')
    files = sorted((p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not files:
        raise StylelensError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {folder}")
    return files


def _open_image(path: Path) -> Image.Image:
    """Decode one image file into memory as 'L' (grayscale sources) or 'RGB' (everything else)."""
    try:
        with Image.open(path) as image:
            return image.convert('L' if image.mode in ('1', 'L') else 'RGB')
    except (UnidentifiedImageError, OSError) as err:
        raise StylelensError(f'cannot read image {path}: {err}') from None


def read_image_folder(folder: Path, resolution: int | None = None, channels: int | None = None) -> np.ndarray:
    """Every image under ``folder`` as uint8 NHWC: grayscale only if all are, squared by a center crop, resized."""
    folder = Path(folder)
    images = [_open_image(path) for path in _image_files(folder)]
    mode = _MODES[channels] if channels else 'L' if all(im.mode == 'L' for im in images) else 'RGB'
    arrays = [_to_array(image, resolution, mode) for image in images]
    sizes = sorted({a.shape[0] for a in arrays})
    if len(sizes) > 1:
        raise StylelensError(f"images under {folder} have different sizes ({', '.join(f'{s}x{s}' for s in sizes)} "
                             f"after a square crop): pass a resolution, e.g. 64")
    return np.stack(arrays)
