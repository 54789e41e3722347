"""Restricted unpickler for StyleGAN2-ADA snapshot pickles: rebuilds tensors and plain data, never runs stored code.

Every network module in a snapshot becomes a `PersistentRecord` (class name + saved ``__dict__``); its embedded
Python source is only hashed. Any global outside a small allow-list is refused before anything is called.
With ``lazy_tensors=True`` tensors stay `LazyTensor` placeholders until materialized, so a caller that needs one
network of a big snapshot decodes only that network's tensors. Opening and sniffing the file is `snapshot_file`'s
job; the records and lazy tensors a load yields are defined in `records`.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import io
import os
import pickle
import warnings
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np
import torch

from stylelens.errors import StylelensError
from stylelens.loading.records import EasyDict, LazyTensor, reconstruct_persistent_obj
from stylelens.loading.snapshot_file import (
    CorruptNetworkError,
    MappedReader,
    Span,
    StrictReader,
    open_snapshot,
    source_label,
)

_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_ALLOWED_SUMMARY = 'tensors, dicts, numpy scalars and arrays, and the network records'
NOT_EXECUTED = 'The file was not executed.'


class UnsafePickleError(StylelensError):
    """The pickle asks for something stylelens refuses to do (an unknown global, hidden code); nothing was run."""


def load_snapshot(file: str | os.PathLike | BinaryIO, *, lazy_tensors: bool = False) -> Any:
    """Load a snapshot pickle with the restricted unpickler; returns the top-level object (normally a dict).

    Network modules come back as `PersistentRecord`; nothing stored in the file is ever executed. With
    `lazy_tensors`, tensors are `LazyTensor`s decoded (and checked) only when materialized, and a path is
    memory-mapped so big tensor payloads are not even read; the mapping is closed before this returns.
    """
    label = source_label(file)
    with labelled_errors(label), open_snapshot(file, label, mapped=lazy_tensors) as (reader, size):
        unpickler = _LazyUnpickler(reader, label) if lazy_tensors else _SafeUnpickler(reader)
        return run_unpickler(unpickler, reader, size)


@contextlib.contextmanager
def labelled_errors(label: str) -> Iterator[None]:
    """Prefix refusals and corruption errors with the file they concern, so every message names it."""
    try:
        yield
    except UnsafePickleError as err:
        raise UnsafePickleError(f'refusing to load {label!r}: {err}') from None
    except CorruptNetworkError as err:
        raise CorruptNetworkError(f'cannot load {label!r}: {err}') from None


def run_unpickler(unpickler: pickle._Unpickler, reader: StrictReader | MappedReader, size: int) -> Any:
    """Run a restricted unpickler over the whole `size`-byte buffer and check nothing follows the pickle; any
    malformed stream becomes a one-line `CorruptNetworkError`."""
    try:
        obj = unpickler.load()
    except StylelensError:
        raise
    except Exception as err:  # any malformed opcode sequence surfaces as some builtin exception
        reason = 'unknown opcode' if isinstance(err, KeyError) else f'{type(err).__name__}: {_first_line(err)}'
        raise CorruptNetworkError(f'the pickle stream is corrupt near byte {reader.tell()} ({reason})') from None
    extra = size - reader.tell()
    if extra and isinstance(obj, int) and obj == _TORCH_LEGACY_MAGIC:
        raise CorruptNetworkError('it looks like a legacy torch.save checkpoint, not a network snapshot pickle')
    if extra:
        raise CorruptNetworkError(f'{extra} unexpected bytes follow the end of the pickle')
    return obj


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an exception message (or its type name)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def numpy_dtype(spec: object, align: object = False, copy: object = False) -> np.dtype:
    """Rebuild a numpy dtype from its type string, refusing anything that could hold Python objects."""
    if not isinstance(spec, str) or not isinstance(align, bool) or not isinstance(copy, bool):
        raise CorruptNetworkError('a numpy dtype record has unexpected arguments')
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise UnsafePickleError(f'it contains a numpy object dtype, which can hold arbitrary objects. {NOT_EXECUTED}')
    return dtype


def numpy_scalar(dtype: object, payload: object = None) -> np.generic:
    """Rebuild a numpy scalar from its dtype and raw bytes (object dtypes refused)."""
    if not isinstance(dtype, np.dtype) or not isinstance(payload, bytes):
        raise CorruptNetworkError('a numpy scalar record has unexpected arguments')
    if dtype.hasobject:
        raise UnsafePickleError(f'it contains a numpy object scalar. {NOT_EXECUTED}')
    if len(payload) != dtype.itemsize:
        raise CorruptNetworkError('a numpy scalar record has the wrong number of bytes')
    return np.frombuffer(payload, dtype=dtype)[0]


def numpy_array_start(subtype: object, shape: object, typecode: object) -> np.ndarray:
    """The empty array numpy's pickles start from (``_reconstruct(ndarray, (0,), b'b')``); BUILD fills it in."""
    if subtype is not np.ndarray or shape != (0,) or typecode not in (b'b', 'b'):
        raise CorruptNetworkError('a numpy array record has unexpected arguments')
    return np.empty((0,), dtype=np.int8)


def check_array_state(state: object) -> None:
    """Refuse array states other than (1, shape, plain dtype, is_fortran, raw bytes of exactly that size)."""
    if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and _is_int_tuple(state[1])
            and isinstance(state[2], np.dtype) and isinstance(state[3], bool) and isinstance(state[4], bytes)):
        raise CorruptNetworkError('a numpy array record has an unexpected state')
    if state[2].hasobject:
        raise UnsafePickleError(f'it contains a numpy object array, which can hold arbitrary objects. {NOT_EXECUTED}')
    if any(n < 0 for n in state[1]) or len(state[4]) != int(np.prod(state[1])) * state[2].itemsize:
        raise CorruptNetworkError('a numpy array record has the wrong number of bytes')


def _load_storage(payload: object) -> torch.TypedStorage | torch.UntypedStorage:
    """Decode a tensor storage (a legacy torch.save payload) with torch's own weights-only loader."""
    if not isinstance(payload, (bytes, bytearray)):
        raise CorruptNetworkError('a tensor storage record does not hold bytes')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            storage = torch.load(io.BytesIO(payload), map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafePickleError(
            f"a tensor storage inside it was rejected by torch's weights-only loader ({_weights_only_reason(err)}). "
            + NOT_EXECUTED
        ) from None
    except Exception as err:
        raise CorruptNetworkError(f'a tensor storage inside it is corrupt ({_first_line(err)})') from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise CorruptNetworkError('a tensor storage record does not contain a storage')
    return storage


def _weights_only_reason(err: BaseException) -> str:
    """Pull the actual reason out of torch's long weights-only error message, as one line."""
    text = str(err)
    marker = 'WeightsUnpickler error:'
    body = text.split(marker, 1)[1] if marker in text else text.split('\n', 1)[-1]
    body = body.split('Check the documentation', 1)[0]
    return ' '.join(body.split()).rstrip('.') or _first_line(err)


class _LazyStorage:
    """A tensor storage of a lazy load, decoded (by `_load_storage`, as in an eager load) on first use."""

    __slots__ = ('_payload', '_label', '_storage')

    def __init__(self, payload: bytes | bytearray | Span, label: str) -> None:
        self._payload: bytes | bytearray | Span | None = payload
        self._label = label
        self._storage: torch.TypedStorage | torch.UntypedStorage | None = None

    def tensor(self, offset: int, size: tuple, stride: tuple, requires_grad: bool, metadata: object) -> torch.Tensor:
        """A tensor view of the decoded storage; errors name the file as those of `load_snapshot` do."""
        with labelled_errors(self._label):
            if self._storage is None:
                payload = self._payload.read() if isinstance(self._payload, Span) else self._payload
                self._storage = _load_storage(payload)
                self._payload = None
            try:
                return _tensor_view(self._storage, offset, size, stride, requires_grad, metadata)
            except StylelensError:
                raise
            except Exception as err:  # sizes and strides that do not fit the decoded storage
                raise CorruptNetworkError(
                    f'a tensor record does not fit its storage ({type(err).__name__}: {_first_line(err)})'
                ) from None


def _lazy_storage(label: str, payload: object) -> _LazyStorage:
    """`_load_storage` of lazy loads: keeps the payload (or where it lies in the file) for decoding on first use."""
    if not isinstance(payload, (bytes, bytearray, Span)):
        raise CorruptNetworkError('a tensor storage record does not hold bytes')
    return _LazyStorage(payload, label)


def _tensor_record(storage_types: type | tuple[type, ...], build: Callable[..., Any]) -> Callable[..., Any]:
    """torch's `_rebuild_tensor_v2` for a storage of `storage_types`: the record checked, then built by `build`."""

    def rebuild(
        storage: object,
        offset: object,
        size: object,
        stride: object,
        requires_grad: object = False,
        backward_hooks: object = None,
        metadata: object = None,
    ) -> Any:
        """Refuse arguments other than a storage, ints, int tuples, a flag and plain flag metadata; drop hooks."""
        if (
            not isinstance(storage, storage_types)
            or not isinstance(offset, int)
            or not _is_int_tuple(size)
            or not _is_int_tuple(stride)
            or not isinstance(requires_grad, bool)
        ):
            raise CorruptNetworkError('a tensor record has unexpected arguments')
        if metadata is not None and not (
            isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, bool) for k, v in metadata.items())
        ):
            raise CorruptNetworkError('a tensor record has unexpected metadata')
        return build(storage, offset, tuple(size), tuple(stride), requires_grad, metadata)

    return rebuild


def _tensor_view(storage: torch.TypedStorage | torch.UntypedStorage, offset: int, size: tuple, stride: tuple,
                 requires_grad: bool, metadata: object) -> torch.Tensor:
    """A tensor view of a decoded storage, refused if it reaches outside it."""
    _check_view_bounds(storage, offset, size, stride)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return torch._utils._rebuild_tensor_v2(
            storage, offset, size, stride, requires_grad, collections.OrderedDict(), metadata
        )


_rebuild_tensor = _tensor_record((torch.TypedStorage, torch.UntypedStorage), _tensor_view)


def _check_view_bounds(storage: torch.TypedStorage | torch.UntypedStorage, offset: int, size: tuple,
                       stride: tuple) -> None:
    """Refuse a tensor view that reaches outside its storage: torch would read memory beyond it."""
    if any(s < 0 for s in size) or any(st < 0 for st in stride) or offset < 0:
        raise CorruptNetworkError('a tensor record has a negative size, stride or offset')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        elements = storage.size() if isinstance(storage, torch.TypedStorage) else storage.nbytes()
    if 0 in size:
        return
    last = offset + sum((s - 1) * st for s, st in zip(size, stride))
    if last >= elements:
        raise CorruptNetworkError(f'a tensor record of shape {list(size)} reaches past the end of its storage '
                                  f'({elements} elements)')


def _is_int_tuple(value: object) -> bool:
    """True for a tuple (or torch.Size) of ints."""
    return isinstance(value, tuple) and all(isinstance(v, int) for v in value)


def _rebuild_parameter(
    data: object, requires_grad: object = False, backward_hooks: object = None
) -> torch.nn.Parameter:
    """Wrap a rebuilt tensor as a Parameter; hooks from the file are dropped."""
    if not isinstance(data, torch.Tensor) or not isinstance(requires_grad, bool):
        raise CorruptNetworkError('a parameter record has unexpected arguments')
    return torch.nn.Parameter(data, requires_grad)


def _rebuild_parameter_with_state(
    data: object, requires_grad: object = False, backward_hooks: object = None, state: object = None
) -> torch.nn.Parameter:
    """Like `_rebuild_parameter`; extra Python attributes saved on the parameter are ignored."""
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _lazy_tensor_view(storage: _LazyStorage, offset: int, size: tuple, stride: tuple, requires_grad: bool,
                      metadata: object) -> LazyTensor:
    """A placeholder for the tensor view, built (and checked against the storage) when materialized."""
    return LazyTensor(size, functools.partial(storage.tensor, offset, size, stride, requires_grad, metadata))


_lazy_tensor = _tensor_record(_LazyStorage, _lazy_tensor_view)  # `_rebuild_tensor` of lazy loads


def _lazy_parameter(data: object, requires_grad: object = False, backward_hooks: object = None) -> LazyTensor:
    """`_rebuild_parameter` of lazy loads: the Parameter is made when the tensor is materialized."""
    if not isinstance(data, LazyTensor) or not isinstance(requires_grad, bool):
        raise CorruptNetworkError('a parameter record has unexpected arguments')
    return LazyTensor(data.shape, lambda: _rebuild_parameter(data.materialize(), requires_grad))


def _lazy_parameter_with_state(
    data: object, requires_grad: object = False, backward_hooks: object = None, state: object = None
) -> LazyTensor:
    """Like `_lazy_parameter`; extra Python attributes saved on the parameter are ignored."""
    return _lazy_parameter(data, requires_grad, backward_hooks)


SAFE_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('dnnlib.util', 'EasyDict'): EasyDict,
    ('numpy', 'dtype'): numpy_dtype,
    ('numpy._core.multiarray', 'scalar'): numpy_scalar,
    ('numpy.core.multiarray', 'scalar'): numpy_scalar,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy._core.multiarray', '_reconstruct'): numpy_array_start,
    ('numpy.core.multiarray', '_reconstruct'): numpy_array_start,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter_with_state,
    ('torch.storage', '_load_from_bytes'): _load_storage,
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): reconstruct_persistent_obj,
}


def _load_build(unpickler: _SafeUnpickler) -> None:
    """BUILD opcode, allowed only to restore numpy dtypes and plain numpy arrays (so a pickle cannot set
    attributes on our objects); an array's state is checked before numpy reads it."""
    target = unpickler.stack[-2]
    if type(target) is np.ndarray:
        check_array_state(unpickler.stack[-1])
    elif not isinstance(target, np.dtype):
        raise UnsafePickleError(
            f'it tries to set the state of a {type(target).__name__} object (pickle BUILD), which stylelens only '
            f'allows for numpy dtypes and arrays. {NOT_EXECUTED}'
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
                f"globals ({_ALLOWED_SUMMARY}). {NOT_EXECUTED}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids: official snapshots have none in the outer pickle."""
        raise UnsafePickleError(
            f'it uses a pickle persistent id ({type(pid).__name__}), which network snapshots never contain. '
            + NOT_EXECUTED
        )


def _resolved(value: Any) -> Any:
    """A memo value with deferred payloads read back as bytes, so only the call deferred for sees a `Span`."""
    if isinstance(value, Span):
        return value.read()
    if type(value) is tuple and any(isinstance(v, Span) for v in value):
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

    def __init__(self, file: StrictReader | MappedReader, label: str) -> None:
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

    def deferred_payload(self, width: int) -> Span | None:
        """The bytes payload being read as a `Span` when it lies outside any frame of a mapped file and goes straight
        into a storage call; None to read it as usual."""
        if (
            not isinstance(self._reader, MappedReader)
            or self._unframer.current_frame is not None
            or not self.stack
            or self.stack[-1] is not self._storage_loader
        ):
            return None
        return self._reader.defer(width)
