"""Opening a snapshot file for the restricted unpickler: format sniffing and readers that report truncation.

The header is checked first, so a zip checkpoint, an image, an HTML error page or an empty file is named as
such. A path loaded lazily is memory-mapped, and big tensor payloads are left in the file as `Span`s, read back
only when their storage is decoded and refused if the file changed meanwhile.
"""
from __future__ import annotations

import contextlib
import io
import mmap
import os
import pickle
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from stylelens.errors import StylelensError

_ENDS_EARLY = 'the pickle ends early: truncated or interrupted download?'
_HEADER_BYTES = 64  # enough for every magic in _KNOWN_FORMATS and the header check's message
# Lazy loads leave bytes payloads at least this big in the mapped file; picklers write these outside frames.
_DEFERRED_MIN_BYTES = 1 << 16
_KNOWN_FORMATS = (
    (b'PK\x03\x04', 'a zip archive, e.g. a torch.save zip checkpoint rather than a network snapshot pickle'),
    (b'\x89PNG\r\n\x1a\n', 'a PNG image'),
    (b'\xff\xd8\xff', 'a JPEG image'),
    (b'\x1f\x8b', 'a gzip file'),
    (b'version https://git-lfs', 'a Git LFS pointer file, not the real pickle'),
    (b'<!DOCTYPE', 'an HTML page, e.g. a download error page'),
    (b'<html', 'an HTML page, e.g. a download error page'),
)


class SnapshotFileError(StylelensError):
    """The snapshot file is missing or cannot be read."""


class CorruptNetworkError(StylelensError):
    """The file is not a network snapshot pickle, or it is damaged or truncated."""


def source_label(file: str | os.PathLike | BinaryIO) -> str:
    """A short name for messages about `file`: the path, or the stream's name."""
    if isinstance(file, (str, os.PathLike)):
        return os.fspath(file)
    return str(getattr(file, 'name', '<stream>'))


@contextlib.contextmanager
def open_snapshot(
    file: str | os.PathLike | BinaryIO, label: str, *, mapped: bool
) -> Iterator[tuple[StrictReader | MappedReader, int]]:
    """A strict reader over the whole file and the file's size in bytes, once its header looks like a pickle.

    With `mapped`, a path is memory-mapped so big payloads need not be read (see `MappedReader.defer`); the
    mapping is closed on exit.
    """
    if mapped and isinstance(file, (str, os.PathLike)):
        data, source = _map_file(file, label)
    else:
        data, source = _read_all(file, label), None
    try:
        _check_header(data[:_HEADER_BYTES])
        yield (StrictReader(data) if source is None else MappedReader(data, source)), len(data)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


@contextlib.contextmanager
def _file_errors(label: str) -> Iterator[None]:
    """Turn OS errors while opening or reading a snapshot into one-line `SnapshotFileError`s."""
    try:
        yield
    except FileNotFoundError:
        raise SnapshotFileError(f'cannot load {label!r}: no such file') from None
    except OSError as err:
        raise SnapshotFileError(f'cannot load {label!r}: {err.strerror or err}') from None


def _read_all(file: str | os.PathLike | BinaryIO, label: str) -> bytes:
    """Read the whole file, turning OS errors into one-line `SnapshotFileError`s."""
    if not isinstance(file, (str, os.PathLike)):
        data = file.read()
        if not isinstance(data, bytes):
            raise SnapshotFileError(f'cannot load {label!r}: the stream is not open in binary mode')
        return data
    with _file_errors(label), open(file, 'rb') as f:
        return f.read()


def _file_identity(f: BinaryIO) -> tuple[int, int, int, int]:
    """What tells an open file from a replaced or rewritten one: device, inode, size and modification time."""
    info = os.fstat(f.fileno())
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


@dataclass(frozen=True)
class _FileSource:
    """A memory-mapped snapshot's file, reopened by path to read a deferred payload, so no handle stays open."""

    path: str
    label: str
    identity: tuple[int, int, int, int]

    def read(self, start: int, size: int) -> bytes:
        """`size` bytes at `start`, refused if the file is no longer the one that was loaded."""
        with _file_errors(self.label), open(self.path, 'rb') as f:
            f.seek(start)
            data = f.read(size)
            if len(data) != size or _file_identity(f) != self.identity:
                raise SnapshotFileError(
                    f'cannot load {self.label!r}: the file changed after it was loaded; load it again'
                )
        return data


@dataclass(frozen=True)
class Span:
    """A bytes payload left in the mapped file by a lazy load; read when its storage is decoded."""

    source: _FileSource
    start: int
    size: int

    def read(self) -> bytes:
        """The payload bytes, from the file."""
        return self.source.read(self.start, self.size)


def _map_file(path: str | os.PathLike, label: str) -> tuple[mmap.mmap | bytes, _FileSource | None]:
    """Map a snapshot file read-only, so big payloads need not be read; one that cannot be mapped (empty, a pipe)
    is read whole instead, without a source."""
    with _file_errors(label), open(path, 'rb') as f:
        source = _FileSource(os.path.abspath(path), label, _file_identity(f))
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), source
        except (OSError, ValueError):
            return f.read(), None


def _check_header(data: bytes) -> None:
    """Reject empty files and files that are plainly not pickles, naming what they look like."""
    if not data:
        raise CorruptNetworkError('the file is empty (0 bytes), not a network snapshot pickle')
    for magic, what in _KNOWN_FORMATS:
        if data.startswith(magic):
            raise CorruptNetworkError(f'the file is not a pickle: it looks like {what}')
    if len(data) < 2 or data[0] != pickle.PROTO[0] or not 2 <= data[1] <= pickle.HIGHEST_PROTOCOL:
        raise CorruptNetworkError(
            f'the file is not a pickle: it starts with {data[:16]!r}, while a network snapshot starts with '
            'the pickle header byte 0x80 and a protocol number'
        )


class StrictReader(io.BytesIO):
    """In-memory reader that reports a short read as truncation, so a cut-off file gets a precise message."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size > 0 and len(data) < size:
            raise CorruptNetworkError(_ENDS_EARLY)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        if not line.endswith(b'\n'):
            raise CorruptNetworkError(_ENDS_EARLY)
        return line


class MappedReader:
    """Strict reader (as `StrictReader`) over a memory-mapped snapshot that can leave a payload unread in the file."""

    def __init__(self, mapped: mmap.mmap, source: _FileSource) -> None:
        self._mapped = mapped
        self._source = source

    def read(self, size: int = -1) -> bytes:
        data = self._mapped.read(size)
        if size > 0 and len(data) < size:
            raise CorruptNetworkError(_ENDS_EARLY)
        return data

    def readline(self) -> bytes:
        line = self._mapped.readline()
        if not line.endswith(b'\n'):
            raise CorruptNetworkError(_ENDS_EARLY)
        return line

    def tell(self) -> int:
        return self._mapped.tell()

    def defer(self, width: int) -> Span | None:
        """Skip the payload of the bytes opcode being read (length field `width` bytes) if it is big, complete and
        followed by the opcodes of a one-argument call; None leaves it to be read as usual."""
        start = self._mapped.tell() + width
        size = int.from_bytes(self._mapped[start - width : start], 'little')
        end = start + size
        if size < _DEFERRED_MIN_BYTES or end > len(self._mapped) or not _one_argument_call_at(self._mapped, end):
            return None
        self._mapped.seek(end)
        return Span(self._source, start, size)


# Opcodes that may sit between an argument and its call without touching the stack, with their lengths.
_STACK_NEUTRAL_OPCODES = {pickle.MEMOIZE[0]: 1, pickle.BINPUT[0]: 2, pickle.LONG_BINPUT[0]: 5, pickle.FRAME[0]: 9}


def _one_argument_call_at(data: mmap.mmap, pos: int) -> bool:
    """True if the opcodes at `pos` are TUPLE1 then REDUCE, with only memo stores and frame starts around them."""
    for opcode in (pickle.TUPLE1[0], pickle.REDUCE[0]):
        while pos < len(data) and data[pos] in _STACK_NEUTRAL_OPCODES:
            pos += _STACK_NEUTRAL_OPCODES[data[pos]]
        if pos >= len(data) or data[pos] != opcode:
            return False
        pos += 1
    return True
