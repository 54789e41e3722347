"""Which network format a file is in, told by its content (never by its name).

A file's first bytes and, for pickles and torch zip archives, the names its pickle stream mentions decide:
an official PyTorch snapshot (StyleGAN2-ADA or StyleGAN3), a TensorFlow network pickle, a rosinality
checkpoint, a `stylelens train` generator, or a safetensors file. Nothing is unpickled here.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from stylelens.errors import StylelensError

OFFICIAL = 'official-pickle'
TENSORFLOW = 'tensorflow-pickle'
ROSINALITY = 'rosinality'
RUN = 'stylelens-run'
SAFETENSORS = 'safetensors'
FORMAT_NAMES = {
    OFFICIAL: 'StyleGAN2-ADA / StyleGAN3 PyTorch pickle',
    TENSORFLOW: 'StyleGAN2 / StyleGAN2-ADA TensorFlow pickle',
    ROSINALITY: 'rosinality stylegan2-pytorch checkpoint',
    RUN: '`stylelens train` generator.pt',
    SAFETENSORS: 'stylelens safetensors export',
}
_SNIFF_BYTES = 1 << 16
_ZIP_MAGIC = b'PK\x03\x04'
_LEGACY_TORCH_MAGIC = b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.'  # protocol 2, then torch's legacy magic number
_ROSINALITY_KEYS = (b'g_ema', b'latent_avg')


class UnknownFormatError(StylelensError):
    """The file is in none of the network formats stylelens reads."""


def _head(path: Path, size: int = _SNIFF_BYTES) -> bytes:
    """The first `size` bytes of the file; a one-line error when it cannot be read."""
    try:
        with open(path, 'rb') as f:
            return f.read(size)
    except OSError as error:
        raise StylelensError(f'cannot read {path}: {error.strerror or error}') from None


def _zip_pickle(path: Path) -> bytes:
    """The start of the pickle stream (`*/data.pkl`) of a torch.save zip archive, or b'' if there is none."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith('data.pkl')), None)
            if name is None:
                return b''
            with archive.open(name) as f:
                return f.read(_SNIFF_BYTES)
    except (zipfile.BadZipFile, OSError, EOFError):
        return b''


def _torch_format(stream: bytes) -> str | None:
    """A torch.save payload's format, from the names in its pickle stream."""
    if b'stylelens-scratch-generator' in stream:
        return RUN
    if any(key in stream for key in _ROSINALITY_KEYS):
        return ROSINALITY
    return None


def detect_format(path: str | os.PathLike) -> str | None:
    """The format of the file at `path` (one of FORMAT_NAMES' keys), or None when it is in none of them."""
    path = Path(path)
    head = _head(path)
    if head.startswith(_ZIP_MAGIC):
        return _torch_format(_zip_pickle(path))
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return _torch_format(head)
    if len(head) >= 8 and head[8:9] == b'{' and int.from_bytes(head[:8], 'little') < 100_000_000:
        return SAFETENSORS
    if head[:1] == b'\x80':
        if b'dnnlib.tflib.network' in head:
            return TENSORFLOW
        return OFFICIAL
    return None


def known_formats() -> str:
    """The formats stylelens reads, for one-line errors."""
    return ', '.join(FORMAT_NAMES.values())
