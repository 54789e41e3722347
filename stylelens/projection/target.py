"""The target image of a projection: read, checked against the network's channels, centre-cropped to a square and
resized with Lanczos filtering to the network's resolution, as NVIDIA's projector.py prepares it."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stylelens.errors import StylelensError

CHANNEL_NAMES = {1: 'grayscale', 2: 'grayscale + alpha', 3: 'RGB', 4: 'RGBA'}
_MODE_CHANNELS = {'1': 1, 'L': 1, 'LA': 2, 'RGB': 3, 'RGBA': 4}
PREPARATION = ('centre-cropped to a square (the shorter side) and resized to the network resolution with Lanczos '
               "filtering, as NVIDIA's projector.py does")


def _describe(channels: int) -> str:
    """'3 channels (RGB)'."""
    return f'{channels} channel{"s" if channels != 1 else ""} ({CHANNEL_NAMES.get(channels, "?")})'


def _open(path: Path) -> Image.Image:
    """The decoded image with palettes expanded; anything PIL cannot read becomes one line."""
    if not path.is_file():
        raise StylelensError(f"--target '{path}': no such file; pass a PNG or JPEG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                if image.mode == 'P':
                    return image.convert('RGBA' if 'transparency' in image.info else 'RGB')
                return image.copy()
    except UnidentifiedImageError:
        raise StylelensError(f"--target '{path}' is not an image PIL can read; pass a PNG or JPEG image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise StylelensError(f"--target '{path}' is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} "
                             f'pixels); shrink it first') from None
    except (OSError, SyntaxError, ValueError) as err:
        raise StylelensError(f"--target '{path}' cannot be decoded ({err}); is the file complete?") from None


def _matching_mode(image: Image.Image, path: Path, channels: int) -> Image.Image:
    """The image in the network's channel layout; only the lossless grayscale -> RGB is done implicitly, every
    conversion that would drop colour or alpha is refused with the way to do it by hand."""
    have = _MODE_CHANNELS.get(image.mode)
    if have is None:
        raise StylelensError(f"--target '{path}' has pixel mode {image.mode} (e.g. 16-bit or float); save it as an "
                             f'8-bit {CHANNEL_NAMES.get(channels, "image")} PNG')
    if have == channels:
        return image.convert('L') if image.mode == '1' else image
    if have == 1 and channels == 3:
        return image.convert('RGB')
    raise StylelensError(f"--target '{path}' has {_describe(have)} but the network makes images with "
                         f'{_describe(channels)}; convert the image to {CHANNEL_NAMES.get(channels, "that")} first')


def load_target(path: str | os.PathLike, resolution: int, channels: int) -> np.ndarray:
    """The target as uint8 [resolution, resolution, channels]: read, channel layout checked, centre-cropped to a
    square and resized with Lanczos filtering (NVIDIA's projector.py)."""
    source = Path(path)
    image = _matching_mode(_open(source), source, channels)
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(image, dtype=np.uint8).reshape(resolution, resolution, channels)
