"""Restricted unpickler for StyleGAN2-ADA snapshot pickles: rebuilds tensors and plain data, never runs stored code.

Every network module in a snapshot becomes a `PersistentRecord` (class name + saved ``__dict__``); its embedded
Python source is only hashed. Any global outside a small allow-list is refused before anything is called.
With ``lazy_tensors=True`` tensors stay `LazyTensor` placeholders until materialized, so a caller that needs one
network of a big snapshot decodes only that network's tensors.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import io
import mmap
import os
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np
import torch

from stylelens.errors import StylelensError

SUPPORTED_PERSISTENCE_VERSIONS = (6,)
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_ALLOWED_SUMMARY = "tensors, dicts, numpy scalars and the network records"
_NOT_EXECUTED = "The file was not executed."
_ENDS_EARLY = "the pickle ends early: truncated or interrupted download?"
_HEADER_BYTES = 64  # enough for every magic in _KNOWN_FORMATS and the header check's message
# Lazy loads leave bytes payloads at least this big in the mapped file; picklers write these outside frames.
_DEFERRED_MIN_BYTES = 1 << 16
_KNOWN_FORMATS = (
    (b"PK\x03\x04", "a zip archive, e.g. a torch.save zip checkpoint rather than a network snapshot pickle"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x1f\x8b", "a gzip file"),
    (b"version https://git-lfs", "a Git LFS pointer file, not the real pickle"),
    (b"<!DOCTYPE", "an HTML page, e.g. a download error page"),
    (b"<html", "an HTML page, e.g. a download error page"),
)


class SnapshotFileError(StylelensError):
    """The snapshot file is missing or cannot be read."""


class CorruptNetworkError(StylelensError):
    """The file is not a network snapshot pickle, or it is damaged or truncated."""


class UnsafePickleError(StylelensError):
    """The pickle asks for something stylelens refuses to do (an unknown global, hidden code); nothing was run."""


class EasyDict(dict):
    """A dict with attribute access; stands in for ``dnnlib.util.EasyDict`` so dnnlib is never imported."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


@dataclass(eq=False)
class PersistentRecord:
    """One network module of a snapshot as plain data: class name and saved ``__dict__``.

    The module's embedded source text is never kept or executed; only its SHA-256 is recorded. Compared by identity.
    """

    class_name: str
    state: dict = field(repr=False)
    module_src_sha256: str

    @property
    def init_args(self) -> tuple:
        """Positional constructor arguments, as plain Python values."""
        return tuple(to_plain(self.state.get("_init_args", ())))

    @property
    def init_kwargs(self) -> dict:
        """Keyword constructor arguments, with nested EasyDicts turned into plain dicts."""
        return to_plain(dict(self.state.get("_init_kwargs") or {}))

    def parameters(self) -> dict[str, torch.Tensor | LazyTensor | None]:
        """The module's own parameters by name (None for unset ones)."""
        return dict(self.state.get("_parameters") or {})

    def buffers(self) -> dict[str, torch.Tensor | LazyTensor | None]:
        """The module's own buffers by name, persistent or not (None for unset ones)."""
        return dict(self.state.get("_buffers") or {})

    def children(self) -> dict[str, PersistentRecord | None]:
        """Direct sub-module records by attribute name."""
        return dict(self.state.get("_modules") or {})

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor | LazyTensor]:
        """Tensors of this module tree under dotted names, in ``torch.nn.Module.state_dict`` order."""
        skipped = set(self.state.get("_non_persistent_buffers_set") or ())
        tensors = {prefix + k: v for k, v in self.parameters().items() if v is not None}
        tensors.update((prefix + k, v) for k, v in self.buffers().items() if v is not None and k not in skipped)
        for name, child in self.children().items():
            if child is not None:
                tensors.update(child.state_dict(f"{prefix}{name}."))
        return tensors


def to_plain(value: Any) -> Any:
    """Recursively turn dict subclasses (e.g. EasyDict) into plain dicts, inside lists and tuples too."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


class LazyTensor:
    """A tensor of a snapshot loaded with ``lazy_tensors=True``: its shape is known, its data is decoded on demand."""

    __slots__ = ("shape", "_build", "_tensor")

    def __init__(self, shape: tuple[int, ...], build: Callable[[], torch.Tensor]) -> None:
        self.shape = torch.Size(shape)
        self._build = build
        self._tensor: torch.Tensor | None = None

    def materialize(self) -> torch.Tensor:
        """The tensor (or Parameter), decoded with the eager loader's checks on the first call, the same object after.

        A refused or corrupt storage raises the error an eager load of the file would have raised.
        """
        if self._tensor is None:
            self._tensor = self._build()
        return self._tensor

    def __repr__(self) -> str:
        return f"LazyTensor(shape={list(self.shape)})"


def materialize_tensors(value: Any) -> Any:
    """`value` with every `LazyTensor` in it decoded: dicts, lists and record states in place, tuples rebuilt.

    Hands out part of a lazily loaded snapshot as an eager load would have returned it.
    """
    seen: set[int] = set()

    def walk(item: Any) -> Any:
        if isinstance(item, LazyTensor):
            return item.materialize()
        if not isinstance(item, (PersistentRecord, dict, list, tuple)) or id(item) in seen:
            return item
        seen.add(id(item))
        if isinstance(item, PersistentRecord):
            walk(item.state)
        elif isinstance(item, dict):
            for key in list(item):
                item[key] = walk(item[key])
        elif isinstance(item, list):
            item[:] = [walk(v) for v in item]
        else:
            decoded = tuple(walk(v) for v in item)
            if any(a is not b for a, b in zip(decoded, item)):
                return decoded
        return item

    return walk(value)


def load_snapshot(file: str | os.PathLike | BinaryIO, *, lazy_tensors: bool = False) -> Any:
    """Load a snapshot pickle with the restricted unpickler; returns the top-level object (normally a dict).

    Network modules come back as `PersistentRecord`; nothing stored in the file is ever executed. With
    `lazy_tensors`, tensors are `LazyTensor`s decoded (and checked) only when materialized, and a path is
    memory-mapped so big tensor payloads are not even read; the mapping is closed before this returns.
    """
    label = _label(file)
    if lazy_tensors and isinstance(file, (str, os.PathLike)):
        data, source = _map_file(file, label)
    else:
        data, source = _read_all(file, label), None
    try:
        with _labelled_errors(label):
            _check_header(data[:_HEADER_BYTES])
            reader = _StrictReader(data) if source is None else _MappedReader(data, source)
            unpickler = _LazyUnpickler(reader, label) if lazy_tensors else _SafeUnpickler(reader)
            return _unpickle(unpickler, reader, len(data))
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


@contextlib.contextmanager
def _labelled_errors(label: str) -> Iterator[None]:
    """Prefix refusals and corruption errors with the file they concern, so every message names it."""
    try:
        yield
    except UnsafePickleError as err:
        raise UnsafePickleError(f"refusing to load {label!r}: {err}") from None
    except CorruptNetworkError as err:
        raise CorruptNetworkError(f"cannot load {label!r}: {err}") from None


def _label(file: str | os.PathLike | BinaryIO) -> str:
    """A short name for messages: the path, or the stream's name."""
    if isinstance(file, (str, os.PathLike)):
        return os.fspath(file)
    return str(getattr(file, "name", "<stream>"))


@contextlib.contextmanager
def _file_errors(label: str) -> Iterator[None]:
    """Turn OS errors while opening or reading a snapshot into one-line `SnapshotFileError`s."""
    try:
        yield
    except FileNotFoundError:
        raise SnapshotFileError(f"cannot load {label!r}: no such file") from None
    except OSError as err:
        raise SnapshotFileError(f"cannot load {label!r}: {err.strerror or err}") from None


def _read_all(file: str | os.PathLike | BinaryIO, label: str) -> bytes:
    """Read the whole file, turning OS errors into one-line `SnapshotFileError`s."""
    if not isinstance(file, (str, os.PathLike)):
        data = file.read()
        if not isinstance(data, bytes):
            raise SnapshotFileError(f"cannot load {label!r}: the stream is not open in binary mode")
        return data
    with _file_errors(label), open(file, "rb") as f:
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
        with _file_errors(self.label), open(self.path, "rb") as f:
            f.seek(start)
            data = f.read(size)
            if len(data) != size or _file_identity(f) != self.identity:
                raise SnapshotFileError(
                    f"cannot load {self.label!r}: the file changed after it was loaded; load it again"
                )
        return data


@dataclass(frozen=True)
class _Span:
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
    with _file_errors(label), open(path, "rb") as f:
        source = _FileSource(os.path.abspath(path), label, _file_identity(f))
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), source
        except (OSError, ValueError):
            return f.read(), None


def _check_header(data: bytes) -> None:
    """Reject empty files and files that are plainly not pickles, naming what they look like."""
    if not data:
        raise CorruptNetworkError("the file is empty (0 bytes), not a network snapshot pickle")
    for magic, what in _KNOWN_FORMATS:
        if data.startswith(magic):
            raise CorruptNetworkError(f"the file is not a pickle: it looks like {what}")
    if len(data) < 2 or data[0] != pickle.PROTO[0] or not 2 <= data[1] <= pickle.HIGHEST_PROTOCOL:
        raise CorruptNetworkError(
            f"the file is not a pickle: it starts with {data[:16]!r}, while a network snapshot starts with "
            "the pickle header byte 0x80 and a protocol number"
        )


def _unpickle(unpickler: _SafeUnpickler, reader: _StrictReader | _MappedReader, size: int) -> Any:
    """Run the restricted unpickler over the whole `size`-byte buffer and check nothing follows the pickle."""
    try:
        obj = unpickler.load()
    except StylelensError:
        raise
    except Exception as err:  # any malformed opcode sequence surfaces as some builtin exception
        reason = "unknown opcode" if isinstance(err, KeyError) else f"{type(err).__name__}: {_first_line(err)}"
        raise CorruptNetworkError(f"the pickle stream is corrupt near byte {reader.tell()} ({reason})") from None
    extra = size - reader.tell()
    if extra and isinstance(obj, int) and obj == _TORCH_LEGACY_MAGIC:
        raise CorruptNetworkError("it looks like a legacy torch.save checkpoint, not a network snapshot pickle")
    if extra:
        raise CorruptNetworkError(f"{extra} unexpected bytes follow the end of the pickle")
    return obj


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an exception message (or its type name)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


class _StrictReader(io.BytesIO):
    """In-memory reader that reports a short read as truncation, so a cut-off file gets a precise message."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size > 0 and len(data) < size:
            raise CorruptNetworkError(_ENDS_EARLY)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        if not line.endswith(b"\n"):
            raise CorruptNetworkError(_ENDS_EARLY)
        return line


class _MappedReader:
    """Strict reader (as `_StrictReader`) over a memory-mapped snapshot that can leave a payload unread in the file."""

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
        if not line.endswith(b"\n"):
            raise CorruptNetworkError(_ENDS_EARLY)
        return line

    def tell(self) -> int:
        return self._mapped.tell()

    def defer(self, width: int) -> _Span | None:
        """Skip the payload of the bytes opcode being read (length field `width` bytes) if it is big, complete and
        followed by the opcodes of a one-argument call; None leaves it to be read as usual."""
        start = self._mapped.tell() + width
        size = int.from_bytes(self._mapped[start - width : start], "little")
        end = start + size
        if size < _DEFERRED_MIN_BYTES or end > len(self._mapped) or not _one_argument_call_at(self._mapped, end):
            return None
        self._mapped.seek(end)
        return _Span(self._source, start, size)


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


def _numpy_dtype(spec: object, align: object = False, copy: object = False) -> np.dtype:
    """Rebuild a numpy dtype from its type string, refusing anything that could hold Python objects."""
    if not isinstance(spec, str) or not isinstance(align, bool) or not isinstance(copy, bool):
        raise CorruptNetworkError("a numpy dtype record has unexpected arguments")
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise UnsafePickleError(f"it contains a numpy object dtype, which can hold arbitrary objects. {_NOT_EXECUTED}")
    return dtype


def _numpy_scalar(dtype: object, payload: object = None) -> np.generic:
    """Rebuild a numpy scalar from its dtype and raw bytes (object dtypes refused)."""
    if not isinstance(dtype, np.dtype) or not isinstance(payload, bytes):
        raise CorruptNetworkError("a numpy scalar record has unexpected arguments")
    if dtype.hasobject:
        raise UnsafePickleError(f"it contains a numpy object scalar. {_NOT_EXECUTED}")
    if len(payload) != dtype.itemsize:
        raise CorruptNetworkError("a numpy scalar record has the wrong number of bytes")
    return np.frombuffer(payload, dtype=dtype)[0]


def _load_storage(payload: object) -> torch.TypedStorage | torch.UntypedStorage:
    """Decode a tensor storage (a legacy torch.save payload) with torch's own weights-only loader."""
    if not isinstance(payload, (bytes, bytearray)):
        raise CorruptNetworkError("a tensor storage record does not hold bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafePickleError(
            f"a tensor storage inside it was rejected by torch's weights-only loader ({_weights_only_reason(err)}). "
            + _NOT_EXECUTED
        ) from None
    except Exception as err:
        raise CorruptNetworkError(f"a tensor storage inside it is corrupt ({_first_line(err)})") from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise CorruptNetworkError("a tensor storage record does not contain a storage")
    return storage


def _weights_only_reason(err: BaseException) -> str:
    """Pull the actual reason out of torch's long weights-only error message, as one line."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    body = text.split(marker, 1)[1] if marker in text else text.split("\n", 1)[-1]
    body = body.split("Check the documentation", 1)[0]
    return " ".join(body.split()).rstrip(".") or _first_line(err)


class _LazyStorage:
    """A tensor storage of a lazy load, decoded (by `_load_storage`, as in an eager load) on first use."""

    __slots__ = ("_payload", "_label", "_storage")

    def __init__(self, payload: bytes | bytearray | _Span, label: str) -> None:
        self._payload: bytes | bytearray | _Span | None = payload
        self._label = label
        self._storage: torch.TypedStorage | torch.UntypedStorage | None = None

    def tensor(self, offset: int, size: tuple, stride: tuple, requires_grad: bool, metadata: object) -> torch.Tensor:
        """A tensor view of the decoded storage; errors name the file as those of `load_snapshot` do."""
        with _labelled_errors(self._label):
            if self._storage is None:
                payload = self._payload.read() if isinstance(self._payload, _Span) else self._payload
                self._storage = _load_storage(payload)
                self._payload = None
            try:
                return _rebuild_tensor(self._storage, offset, size, stride, requires_grad, None, metadata)
            except StylelensError:
                raise
            except Exception as err:  # sizes and strides that do not fit the decoded storage
                raise CorruptNetworkError(
                    f"a tensor record does not fit its storage ({type(err).__name__}: {_first_line(err)})"
                ) from None


def _lazy_storage(label: str, payload: object) -> _LazyStorage:
    """`_load_storage` of lazy loads: keeps the payload (or where it lies in the file) for decoding on first use."""
    if not isinstance(payload, (bytes, bytearray, _Span)):
        raise CorruptNetworkError("a tensor storage record does not hold bytes")
    return _LazyStorage(payload, label)


def _check_tensor_record(
    storage_ok: bool, offset: object, size: object, stride: object, requires_grad: object, metadata: object
) -> None:
    """Refuse tensor records whose arguments are not a storage, ints, int tuples, a flag and plain flag metadata."""
    if (
        not storage_ok
        or not isinstance(offset, int)
        or not _is_int_tuple(size)
        or not _is_int_tuple(stride)
        or not isinstance(requires_grad, bool)
    ):
        raise CorruptNetworkError("a tensor record has unexpected arguments")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, bool) for k, v in metadata.items())
    ):
        raise CorruptNetworkError("a tensor record has unexpected metadata")


def _rebuild_tensor(
    storage: object,
    offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> torch.Tensor:
    """Rebuild a tensor view of a storage; hooks from the file are dropped, the metadata must be plain flags."""
    _check_tensor_record(
        isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)), offset, size, stride, requires_grad, metadata
    )
    _check_view_bounds(storage, offset, tuple(size), tuple(stride))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch._utils._rebuild_tensor_v2(
            storage, offset, tuple(size), tuple(stride), requires_grad, collections.OrderedDict(), metadata
        )


def _check_view_bounds(storage: torch.TypedStorage | torch.UntypedStorage, offset: int, size: tuple,
                       stride: tuple) -> None:
    """Refuse a tensor view that reaches outside its storage: torch would read memory beyond it."""
    if any(s < 0 for s in size) or any(st < 0 for st in stride) or offset < 0:
        raise CorruptNetworkError("a tensor record has a negative size, stride or offset")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        elements = storage.size() if isinstance(storage, torch.TypedStorage) else storage.nbytes()
    if 0 in size:
        return
    last = offset + sum((s - 1) * st for s, st in zip(size, stride))
    if last >= elements:
        raise CorruptNetworkError(f"a tensor record of shape {list(size)} reaches past the end of its storage "
                                  f"({elements} elements)")


def _is_int_tuple(value: object) -> bool:
    """True for a tuple (or torch.Size) of ints."""
    return isinstance(value, tuple) and all(isinstance(v, int) for v in value)


def _rebuild_parameter(
    data: object, requires_grad: object = False, backward_hooks: object = None
) -> torch.nn.Parameter:
    """Wrap a rebuilt tensor as a Parameter; hooks from the file are dropped."""
    if not isinstance(data, torch.Tensor) or not isinstance(requires_grad, bool):
        raise CorruptNetworkError("a parameter record has unexpected arguments")
    return torch.nn.Parameter(data, requires_grad)


def _rebuild_parameter_with_state(
    data: object, requires_grad: object = False, backward_hooks: object = None, state: object = None
) -> torch.nn.Parameter:
    """Like `_rebuild_parameter`; extra Python attributes saved on the parameter are ignored."""
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _lazy_tensor(
    storage: object,
    offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> LazyTensor:
    """`_rebuild_tensor` of lazy loads: the record is checked now, the tensor built when materialized."""
    _check_tensor_record(isinstance(storage, _LazyStorage), offset, size, stride, requires_grad, metadata)
    build = functools.partial(storage.tensor, offset, tuple(size), tuple(stride), requires_grad, metadata)
    return LazyTensor(size, build)


def _lazy_parameter(data: object, requires_grad: object = False, backward_hooks: object = None) -> LazyTensor:
    """`_rebuild_parameter` of lazy loads: the Parameter is made when the tensor is materialized."""
    if not isinstance(data, LazyTensor) or not isinstance(requires_grad, bool):
        raise CorruptNetworkError("a parameter record has unexpected arguments")
    return LazyTensor(data.shape, lambda: _rebuild_parameter(data.materialize(), requires_grad))


def _lazy_parameter_with_state(
    data: object, requires_grad: object = False, backward_hooks: object = None, state: object = None
) -> LazyTensor:
    """Like `_lazy_parameter`; extra Python attributes saved on the parameter are ignored."""
    return _lazy_parameter(data, requires_grad, backward_hooks)


def _reconstruct_persistent_obj(meta: object) -> PersistentRecord:
    """Turn an official persistent-object record into a `PersistentRecord`, hashing but never running its source."""
    if not isinstance(meta, dict):
        raise CorruptNetworkError("a network record is not a dict")
    kind, version = meta.get("type"), meta.get("version")
    if kind != "class":
        raise CorruptNetworkError(f"a network record has type {kind!r}; stylelens only reads type 'class'")
    if version not in SUPPORTED_PERSISTENCE_VERSIONS:
        raise CorruptNetworkError(
            f"a network record uses persistence format version {version!r}; stylelens reads version "
            + ", ".join(map(str, SUPPORTED_PERSISTENCE_VERSIONS))
        )
    class_name, source, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    if not isinstance(class_name, str) or not class_name.isidentifier():
        raise CorruptNetworkError(f"a network record has an invalid class name {class_name!r}")
    if not isinstance(source, str) or not isinstance(state, dict):
        raise CorruptNetworkError(f"the {class_name} record lacks its source text or its state")
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    return PersistentRecord(class_name=class_name, state=dict(state), module_src_sha256=digest)


SAFE_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
}


def _load_build(unpickler: _SafeUnpickler) -> None:
    """BUILD opcode, allowed only to restore numpy dtypes (so a pickle cannot set attributes on our objects)."""
    target = unpickler.stack[-2]
    if not isinstance(target, np.dtype):
        raise UnsafePickleError(
            f"it tries to set the state of a {type(target).__name__} object (pickle BUILD), which stylelens only "
            f"allows for numpy dtypes. {_NOT_EXECUTED}"
        )
    pickle._Unpickler.load_build(unpickler)


class _SafeUnpickler(pickle._Unpickler):
    """Pure-Python unpickler whose globals come only from `SAFE_GLOBALS` and whose BUILD is restricted."""

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: _load_build}

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        """Return the safe stand-in for an allowed global; refuse every other global by name."""
        try:
            return SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"it references the global {module}.{name}, which is not on stylelens's allow-list of safe "
                f"globals ({_ALLOWED_SUMMARY}). {_NOT_EXECUTED}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids: official snapshots have none in the outer pickle."""
        raise UnsafePickleError(
            f"it uses a pickle persistent id ({type(pid).__name__}), which network snapshots never contain. "
            + _NOT_EXECUTED
        )


def _resolved(value: Any) -> Any:
    """A memo value with deferred payloads read back as bytes, so only the call deferred for sees a `_Span`."""
    if isinstance(value, _Span):
        return value.read()
    if type(value) is tuple and any(isinstance(v, _Span) for v in value):
        return tuple(_resolved(v) for v in value)
    return value


def _resolving(load: Callable[[pickle._Unpickler], None]) -> Callable[[_LazyUnpickler], None]:
    """A memo-fetch opcode handler that passes on deferred payloads as bytes."""

    def load_resolved(unpickler: _LazyUnpickler) -> None:
        load(unpickler)
        unpickler.stack[-1] = _resolved(unpickler.stack[-1])

    return load_resolved


def _deferring(load: Callable[[pickle._Unpickler], None], width: int) -> Callable[[_LazyUnpickler], None]:
    """A BINBYTES/BINBYTES8 handler (length field `width` bytes) that leaves big storage payloads in the file."""

    def load_bytes(unpickler: _LazyUnpickler) -> None:
        span = unpickler.deferred_payload(width)
        if span is None:
            load(unpickler)
        else:
            unpickler.append(span)

    return load_bytes


class _LazyUnpickler(_SafeUnpickler):
    """`_SafeUnpickler` for ``lazy_tensors=True``: same allow-list, but storages, tensors and parameters become lazy
    placeholders, and big storage payloads of a mapped file are skipped rather than copied."""

    dispatch = {
        **_SafeUnpickler.dispatch,
        pickle.BINBYTES[0]: _deferring(pickle._Unpickler.load_binbytes, 4),
        pickle.BINBYTES8[0]: _deferring(pickle._Unpickler.load_binbytes8, 8),
        pickle.GET[0]: _resolving(pickle._Unpickler.load_get),
        pickle.BINGET[0]: _resolving(pickle._Unpickler.load_binget),
        pickle.LONG_BINGET[0]: _resolving(pickle._Unpickler.load_long_binget),
    }

    def __init__(self, file: _StrictReader | _MappedReader, label: str) -> None:
        super().__init__(file)
        self._reader = file
        self._storage_loader = functools.partial(_lazy_storage, label)
        self._lazy_globals: dict[Callable[..., Any], Callable[..., Any]] = {
            _load_storage: self._storage_loader,
            _rebuild_tensor: _lazy_tensor,
            _rebuild_parameter: _lazy_parameter,
            _rebuild_parameter_with_state: _lazy_parameter_with_state,
        }

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        """The allowed global, with the tensor builders swapped for their lazy counterparts."""
        found = super().find_class(module, name)
        return self._lazy_globals.get(found, found)

    def deferred_payload(self, width: int) -> _Span | None:
        """The bytes payload being read as a `_Span` when it lies outside any frame of a mapped file and goes straight
        into a storage call; None to read it as usual."""
        if (
            not isinstance(self._reader, _MappedReader)
            or self._unframer.current_frame is not None
            or not self.stack
            or self.stack[-1] is not self._storage_loader
        ):
            return None
        return self._reader.defer(width)
