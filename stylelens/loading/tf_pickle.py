"""TensorFlow StyleGAN2 / StyleGAN2-ADA network pickles, read without TensorFlow and without running anything in them.

Such a pickle is the tuple (G, D, Gs) of `dnnlib.tflib.network.Network` objects, each a state dict holding static
kwargs, variables as numpy arrays, sub-networks and the TF graph code that builds it (`build_module_src`). The
restricted unpickler here admits only the globals such a pickle needs: the Network class (an inert holder that
keeps its state as data), numpy arrays, scalars and dtypes (numpy 1 and 2 spellings), EasyDict and OrderedDict.
Any other global is refused before anything is called, and the graph code is never executed. `load_tf_networks`
converts the requested networks with `tf_convert` and rebuilds them as our official-layout modules.
"""
from __future__ import annotations

import collections
import contextlib
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from stylelens.loading.rebuild import NetworkRebuildError, build_checked
from stylelens.loading.records import EasyDict
from stylelens.loading.safe_pickle import (
    NOT_EXECUTED,
    UnsafePickleError,
    labelled_errors,
    numpy_dtype,
    numpy_scalar,
    run_unpickler,
)
from stylelens.loading.snapshot_file import CorruptNetworkError, open_snapshot, source_label
from stylelens.loading.tf_convert import (
    TFConversionError,
    discriminator_kwargs,
    discriminator_tensors,
    generator_kwargs,
    generator_tensors,
    printable,
    refuse_unsupported_variables,
)
from stylelens.vendor.stylegan2_ada import networks

TF_NAMES = {'G': 'G', 'D': 'D', 'G_ema': 'Gs'}  # our network keys -> the TF tuple's (G, D, Gs)
MIN_STATE_VERSION = 4  # NVIDIA's converter reads tflib Network states of version 4 (StyleGAN2) and 5 (-ADA)
_MAX_NESTING = 3  # G -> synthesis / mapping is as deep as TF networks go
_ALLOWED_SUMMARY = 'the tflib Network record, numpy arrays, scalars and dtypes, dicts'


class _NetworkState:
    """Stands in for `dnnlib.tflib.network.Network`: keeps the pickled state dict as data and does nothing else."""

    __slots__ = ('state',)

    def __new__(cls, *args: Any) -> _NetworkState:
        if args:
            raise CorruptNetworkError('a tflib Network record has constructor arguments')
        holder = super().__new__(cls)
        holder.state = None
        return holder


class _NDArrayType:
    """Stands in for the `numpy.ndarray` class, which a TF pickle names only as `_reconstruct`'s first argument."""

    __slots__ = ()


_NDARRAY = _NDArrayType()


class _ArrayRecord:
    """A numpy array while it is unpickled: made by `_reconstruct`, filled by BUILD with its shape, dtype and bytes."""

    __slots__ = ('array',)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None


def _reconstruct(subtype: object, shape: object, typecode: object) -> _ArrayRecord:
    """Stand-in for numpy's `_reconstruct`: an empty array record, only for plain ndarrays."""
    if subtype is not _NDARRAY or not isinstance(shape, tuple) or not isinstance(typecode, bytes):
        raise CorruptNetworkError('a numpy array record has unexpected arguments')
    return _ArrayRecord()


def _array(state: object) -> np.ndarray:
    """A numeric numpy array from its pickled state (version, shape, dtype, fortran order, raw bytes), checked."""
    if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[0], int)):
        raise CorruptNetworkError('a numpy array record has an unexpected state')
    _, shape, dtype, fortran, raw = state
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
            and isinstance(dtype, np.dtype) and isinstance(fortran, bool)):
        raise CorruptNetworkError('a numpy array record has an unexpected shape, dtype or order')
    if dtype.hasobject or dtype.kind not in 'biuf':
        raise UnsafePickleError(f'it holds a numpy array of dtype {dtype}, while TensorFlow network pickles hold '
                                f'numeric arrays only. {NOT_EXECUTED}')
    count = math.prod(shape)
    if not isinstance(raw, bytes) or len(raw) != count * dtype.itemsize:
        raise CorruptNetworkError(f'a numpy array record of shape {list(shape)} does not hold '
                                  f'{count * dtype.itemsize} bytes of {dtype} data')
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order='F' if fortran else 'C')


def _load_build(unpickler: _TFUnpickler) -> None:
    """BUILD opcode, allowed only to fill Network records, numpy array records and numpy dtypes."""
    state = unpickler.stack.pop()
    target = unpickler.stack[-1]
    if isinstance(target, _NetworkState):
        if not isinstance(state, dict):
            raise CorruptNetworkError('a tflib Network record has a state that is not a dict')
        target.state = state
    elif isinstance(target, _ArrayRecord):
        target.array = _array(state)
    elif isinstance(target, np.dtype):
        target.__setstate__(state)
    else:
        raise UnsafePickleError(f'it tries to set the state of a {type(target).__name__} object (pickle BUILD), '
                                f'which stylelens allows only for Network records and numpy arrays. {NOT_EXECUTED}')


_TF_GLOBALS: dict[tuple[str, str], Callable[..., Any] | _NDArrayType] = {
    ('dnnlib.tflib.network', 'Network'): _NetworkState,
    ('dnnlib.util', 'EasyDict'): EasyDict,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('numpy', 'ndarray'): _NDARRAY,
    ('numpy', 'dtype'): numpy_dtype,
    ('numpy.core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy.core.multiarray', 'scalar'): numpy_scalar,
    ('numpy._core.multiarray', 'scalar'): numpy_scalar,
}


class _TFUnpickler(pickle._Unpickler):
    """Pure-Python unpickler whose globals come only from `_TF_GLOBALS` and whose BUILD is restricted."""

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: _load_build}

    def find_class(self, module: str, name: str) -> Any:
        """The stand-in for an allowed global; every other global is refused by name."""
        try:
            return _TF_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"it references the global {printable(f'{module}.{name}')}, which is not on stylelens's allow-list for "
                f'TensorFlow network pickles ({_ALLOWED_SUMMARY}). {NOT_EXECUTED}'
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids: TF network pickles have none."""
        raise UnsafePickleError(f'it uses a pickle persistent id ({type(pid).__name__}), which TensorFlow network '
                                f'pickles never contain. {NOT_EXECUTED}')


@dataclass(frozen=True)
class TFNetwork:
    """One TF network as data: its static kwargs and every variable, sub-network variables prefixed with the
    component's name (`mapping/Dense0/weight`), as NVIDIA's converter names them."""

    static_kwargs: dict[str, Any]
    variables: dict[str, np.ndarray]


def _state(holder: object, where: str) -> dict:
    """The state dict of a Network record; versions before 4 are refused."""
    if not isinstance(holder, _NetworkState) or holder.state is None:
        raise CorruptNetworkError(f'{where} is not a complete tflib Network record')
    version = holder.state.get('version')
    if type(version) is not int:
        raise CorruptNetworkError(f'{where} has no valid tflib Network state version')
    if version < MIN_STATE_VERSION:
        raise TFConversionError(f"{where} is a tflib Network of state version {version}; stylelens (like NVIDIA's "
                                f'converter) reads versions {MIN_STATE_VERSION} and later (StyleGAN2, StyleGAN2-ADA)')
    return holder.state


def _variable(value: object, name: str) -> np.ndarray:
    """A variable's value as a numeric numpy array (0-d for scalars)."""
    if isinstance(value, _ArrayRecord) and value.array is not None:
        return value.array
    if isinstance(value, np.generic) and value.dtype.kind in 'biuf':
        return np.asarray(value)
    raise CorruptNetworkError(f'TF variable {printable(name)} holds a {type(value).__name__}, not a numeric array')


def _collect_variables(holder: object, where: str, prefix: str, found: dict[str, np.ndarray], depth: int) -> None:
    """Add the variables of a network and of its components (prefixed with their keys) to `found`."""
    state = _state(holder, where)
    variables, components = state.get('variables'), state.get('components', {})
    if not isinstance(variables, (list, tuple)) or not isinstance(components, dict):
        raise CorruptNetworkError(f'{where} has no valid variables list or components dict')
    for item in variables:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise CorruptNetworkError(f'{where} has a variable that is not a (name, value) pair')
        name = prefix + item[0]
        if name in found:
            raise CorruptNetworkError(f'{where} has the variable {printable(name)} twice')
        found[name] = _variable(item[1], name)
    if components and depth >= _MAX_NESTING:
        raise CorruptNetworkError(f'{where} nests sub-networks deeper than TensorFlow networks do')
    for key, component in components.items():
        if not isinstance(key, str):
            raise CorruptNetworkError(f'{where} has a component whose name is not a string')
        _collect_variables(component, f'{where}/{printable(key)}', f'{prefix}{key}/', found, depth + 1)


def _network(holder: object, where: str) -> TFNetwork:
    """A top-level Network record as a `TFNetwork`."""
    static_kwargs = _state(holder, where).get('static_kwargs')
    if not isinstance(static_kwargs, dict) or not all(isinstance(k, str) for k in static_kwargs):
        raise CorruptNetworkError(f'{where} has no valid static kwargs dict')
    variables: dict[str, np.ndarray] = {}
    _collect_variables(holder, where, '', variables, 0)
    return TFNetwork(dict(static_kwargs), variables)


def read_tf_pickle(path: str | os.PathLike) -> dict[str, TFNetwork]:
    """The networks of a TF network pickle by their TF names ('G', 'D', 'Gs'), read with the restricted unpickler."""
    label = source_label(path)
    with labelled_errors(label), open_snapshot(path, label, mapped=True) as (reader, size):
        top = run_unpickler(_TFUnpickler(reader), reader, size)
        if not (isinstance(top, tuple) and len(top) == 3 and all(isinstance(n, _NetworkState) for n in top)):
            found = f'a {len(top)}-tuple' if isinstance(top, tuple) else f'a {type(top).__name__}'
            raise CorruptNetworkError(f'it is not a TensorFlow network pickle: expected the tuple (G, D, Gs) of '
                                      f'tflib Networks, found {found}')
        return {name: _network(holder, name) for name, holder in zip(('G', 'D', 'Gs'), top)}


@contextlib.contextmanager
def _conversion_errors(label: str) -> Iterator[None]:
    """Name the file in refusals of the conversion, as the reader's errors do."""
    try:
        yield
    except (TFConversionError, NetworkRebuildError) as err:
        raise type(err)(f'cannot convert the TensorFlow pickle {label!r}: {err}') from None


_CONVERTERS = {'G': (networks.Generator, generator_kwargs, generator_tensors),
               'D': (networks.Discriminator, discriminator_kwargs, discriminator_tensors)}


def _build(network: TFNetwork, key: str) -> torch.nn.Module:
    """Our official-layout module for one TF network (`key` G, D or G_ema), built on the meta device, checked, then
    filled with the converted variables."""
    cls, make_kwargs, convert = _CONVERTERS['D' if key == 'D' else 'G']
    refuse_unsupported_variables(network.variables, key)
    kwargs = make_kwargs(network.static_kwargs, key)
    tensors: dict[str, torch.Tensor] = {}
    # build_checked hands its meta-device skeleton to the check before comparing tensors: the converter reads from
    # it which tensors the network has, and fills `tensors` for that comparison.
    return build_checked(cls, (), kwargs, tensors, key,
                         lambda module: tensors.update(convert(module, network.variables, key)))


def load_tf_networks(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The networks `keys` (of G, D, G_ema) of a TF pickle, converted as NVIDIA's converter does and rebuilt as our
    modules (eval mode, no grad); networks not asked for are None, and so are `training_set_kwargs` and
    `augment_pipe`, which TF pickles do not hold."""
    label = source_label(path)
    with _conversion_errors(label):
        tf_networks = read_tf_pickle(path)
        result: dict[str, Any] = dict.fromkeys(TF_NAMES)
        for key in keys:
            result[key] = _build(tf_networks[TF_NAMES[key]], key)
    return {**result, 'training_set_kwargs': None, 'augment_pipe': None}
