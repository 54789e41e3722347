"""Restricted unpickler for StyleGAN2-ADA snapshot pickles: rebuilds tensors and plain data, never runs stored code.

Every network module in a snapshot becomes a `PersistentRecord` (class name + saved ``__dict__``); its embedded
Python source is only hashed. Any global outside a small allow-list is refused before anything is called.
"""
from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from stylelens.errors import StylelensError

SUPPORTED_PERSISTENCE_VERSIONS = (6,)
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_ALLOWED_SUMMARY = "tensors, dicts, numpy scalars and the network records"
_NOT_EXECUTED = "The file was not executed."
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

    def parameters(self) -> dict[str, torch.Tensor | None]:
        """The module's own parameters by name (None for unset ones)."""
        return dict(self.state.get("_parameters") or {})

    def buffers(self) -> dict[str, torch.Tensor | None]:
        """The module's own buffers by name, persistent or not (None for unset ones)."""
        return dict(self.state.get("_buffers") or {})

    def children(self) -> dict[str, PersistentRecord | None]:
        """Direct sub-module records by attribute name."""
        return dict(self.state.get("_modules") or {})

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
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


def load_snapshot(file: str | os.PathLike | BinaryIO) -> Any:
    """Load a snapshot pickle with the restricted unpickler; returns the top-level object (normally a dict).

    Network modules come back as `PersistentRecord`; nothing stored in the file is ever executed.
    """
    label = _label(file)
    data = _read_all(file, label)
    try:
        _check_header(data)
        return _unpickle(data)
    except UnsafePickleError as err:
        raise UnsafePickleError(f"refusing to load {label!r}: {err}") from None
    except CorruptNetworkError as err:
        raise CorruptNetworkError(f"cannot load {label!r}: {err}") from None


def _label(file: str | os.PathLike | BinaryIO) -> str:
    """A short name for messages: the path, or the stream's name."""
    if isinstance(file, (str, os.PathLike)):
        return os.fspath(file)
    return str(getattr(file, "name", "<stream>"))


def _read_all(file: str | os.PathLike | BinaryIO, label: str) -> bytes:
    """Read the whole file, turning OS errors into one-line `SnapshotFileError`s."""
    if not isinstance(file, (str, os.PathLike)):
        data = file.read()
        if not isinstance(data, bytes):
            raise SnapshotFileError(f"cannot load {label!r}: the stream is not open in binary mode")
        return data
    try:
        with open(file, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise SnapshotFileError(f"cannot load {label!r}: no such file") from None
    except OSError as err:
        raise SnapshotFileError(f"cannot load {label!r}: {err.strerror or err}") from None


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


def _unpickle(data: bytes) -> Any:
    """Run the restricted unpickler over the whole buffer and check nothing follows the pickle."""
    reader = _StrictReader(data)
    try:
        obj = _SafeUnpickler(reader).load()
    except StylelensError:
        raise
    except Exception as err:  # any malformed opcode sequence surfaces as some builtin exception
        reason = "unknown opcode" if isinstance(err, KeyError) else f"{type(err).__name__}: {_first_line(err)}"
        raise CorruptNetworkError(f"the pickle stream is corrupt near byte {reader.tell()} ({reason})") from None
    extra = len(data) - reader.tell()
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
            raise CorruptNetworkError("the pickle ends early: truncated or interrupted download?")
        return data

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        if not line.endswith(b"\n"):
            raise CorruptNetworkError("the pickle ends early: truncated or interrupted download?")
        return line


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
    if (
        not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage))
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch._utils._rebuild_tensor_v2(
            storage, offset, tuple(size), tuple(stride), requires_grad, collections.OrderedDict(), metadata
        )


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
