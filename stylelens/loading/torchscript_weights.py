"""The tensors of a TorchScript archive (`torch.jit.save`), read without running, compiling or importing any of it.

A TorchScript archive is a zip: ``NAME/data.pkl`` (the module tree, a pickle), ``NAME/data/K`` (raw storages) and
``NAME/code/`` (the TorchScript source, which `torch.jit.load` would compile and run). Only ``data.pkl`` and the
storages are read here. Its pickle is run by a restricted unpickler: scripted modules (globals named
``__torch__.*``) become inert `ScriptModuleRecord`s, tensors are rebuilt with `safe_pickle`'s checked builder from
storages of plain dtypes, and any other global is refused by name before anything is called.
"""
from __future__ import annotations

import os
import pickle
import re
import sys
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from stylelens.loading.safe_pickle import NOT_EXECUTED, SAFE_GLOBALS, UnsafePickleError, labelled_errors, run_unpickler
from stylelens.loading.snapshot_file import CorruptNetworkError, StrictReader

STORAGE_DTYPES: dict[str, torch.dtype] = {
    'FloatStorage': torch.float32, 'DoubleStorage': torch.float64, 'HalfStorage': torch.float16,
    'BFloat16Storage': torch.bfloat16, 'LongStorage': torch.int64, 'IntStorage': torch.int32,
    'ShortStorage': torch.int16, 'CharStorage': torch.int8, 'ByteStorage': torch.uint8, 'BoolStorage': torch.bool,
}
_STORAGE_KEY = re.compile(r'[0-9A-Za-z_]{1,64}')
_ALLOWED_SUMMARY = 'scripted modules as inert records, tensors of plain dtypes, and lists of numbers'


class ScriptModuleRecord:
    """An inert stand-in for one scripted module: its TorchScript class name and its saved attributes."""

    __slots__ = ('class_name', 'attributes')

    def __init__(self, class_name: str) -> None:
        self.class_name = class_name
        self.attributes: dict[str, Any] = {}

    def __setstate__(self, state: object) -> None:
        """Keep the saved attributes (BUILD); a state that is not a dict of named values is refused."""
        if not (isinstance(state, dict) and all(isinstance(k, str) for k in state)):
            raise CorruptNetworkError(f'the saved state of {self.class_name} is not a dict of attributes')
        self.attributes = dict(state)


class _ScriptClass:
    """What a ``__torch__.*`` global resolves to: a name only, usable solely to make a `ScriptModuleRecord`."""

    __slots__ = ('name',)

    def __init__(self, name: str) -> None:
        self.name = name


def _checked_list(kind: type) -> Callable[[object], list]:
    """A stand-in for torch.jit._pickle's list builders: the list itself, if every item is a `kind`."""

    def build(items: object) -> list:
        if not (isinstance(items, list) and all(isinstance(v, kind) for v in items)):
            raise CorruptNetworkError(f'a list record does not hold only {kind.__name__} values')
        return items

    return build


_GLOBALS: dict[tuple[str, str], Any] = {
    ('torch._utils', '_rebuild_tensor_v2'): SAFE_GLOBALS[('torch._utils', '_rebuild_tensor_v2')],
    ('collections', 'OrderedDict'): OrderedDict,
    ('torch.jit._pickle', 'build_intlist'): _checked_list(int),
    ('torch.jit._pickle', 'build_doublelist'): _checked_list(float),
    ('torch.jit._pickle', 'build_boollist'): _checked_list(bool),
    ('torch.jit._pickle', 'build_tensorlist'): _checked_list(torch.Tensor),
    **{('torch', name): dtype for name, dtype in STORAGE_DTYPES.items()},
}


def _load_newobj(unpickler: _ScriptUnpickler) -> None:
    """NEWOBJ, allowed only to create a `ScriptModuleRecord` from a ``__torch__.*`` name, with no arguments."""
    args = unpickler.stack.pop()
    cls = unpickler.stack.pop()
    if not isinstance(cls, _ScriptClass) or args != ():
        kind = getattr(cls, '__name__', type(cls).__name__)
        raise UnsafePickleError(f'it tries to construct a {kind} object (pickle NEWOBJ), which '
                                f'stylelens only allows for scripted modules. {NOT_EXECUTED}')
    unpickler.append(ScriptModuleRecord(cls.name))


def _load_build(unpickler: _ScriptUnpickler) -> None:
    """BUILD, allowed only to restore the attributes of a `ScriptModuleRecord`."""
    state = unpickler.stack.pop()
    target = unpickler.stack[-1]
    if not isinstance(target, ScriptModuleRecord):
        raise UnsafePickleError(f'it tries to set the state of a {type(target).__name__} object (pickle BUILD), '
                                f'which stylelens only allows for scripted modules. {NOT_EXECUTED}')
    target.__setstate__(state)


class _ScriptUnpickler(pickle._Unpickler):
    """Pure-Python unpickler for ``data.pkl``: globals from `_GLOBALS` or ``__torch__.*`` names, storages from the
    archive, NEWOBJ and BUILD only for scripted-module records."""

    dispatch = {**pickle._Unpickler.dispatch, pickle.NEWOBJ[0]: _load_newobj, pickle.BUILD[0]: _load_build}

    def __init__(self, reader: StrictReader, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(reader)
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, tuple[torch.dtype, int, torch.TypedStorage]] = {}

    def find_class(self, module: str, name: str) -> Any:
        """The stand-in of an allowed global; a scripted-module name; every other global refused by name."""
        if module == '__torch__' or module.startswith('__torch__.'):
            return _ScriptClass(f'{module}.{name}')
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"it references the global {module}.{name}, which is not on stylelens's "
                                    f'allow-list for TorchScript archives ({_ALLOWED_SUMMARY}). {NOT_EXECUTED}') from None

    def persistent_load(self, pid: Any) -> torch.TypedStorage:
        """A storage record ``('storage', dtype, key, location, numel)``: the bytes of ``data/KEY``, exactly
        `numel` elements of that dtype, on the CPU."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'):
            raise UnsafePickleError(f'it uses a persistent id other than a storage record. {NOT_EXECUTED}')
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or not isinstance(key, str) or not _STORAGE_KEY.fullmatch(key) \
                or not isinstance(numel, int) or numel < 0:
            raise CorruptNetworkError('a storage record has unexpected fields')
        if key not in self._storages:
            self._storages[key] = (dtype, numel, self._read_storage(key, dtype, numel))
        known_dtype, known_numel, storage = self._storages[key]
        if (known_dtype, known_numel) != (dtype, numel):
            raise CorruptNetworkError(f'storage {key} is referenced with two different types or sizes')
        return storage

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.TypedStorage:
        """Read ``data/KEY`` after checking that its declared size is exactly `numel` elements of `dtype`."""
        name = f'{self._prefix}data/{key}'
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise CorruptNetworkError(f'the archive has no storage record {name}') from None
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        if info.file_size != nbytes:
            raise CorruptNetworkError(f'storage {name} holds {info.file_size} bytes, not the {nbytes} its record says')
        raw = bytearray(self._archive.read(info))
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # TypedStorage is what torch's own loader hands to _rebuild_tensor_v2
            return torch.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def read_torchscript_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of the TorchScript archive at `path`, keyed as the scripted module's ``state_dict()`` would key
    it (``layers.conv1.weight``); nothing in the archive is executed. Errors are one line naming the file."""
    label = os.fspath(path)
    with labelled_errors(label):
        tree = _unpickle_archive(Path(path))
        if not isinstance(tree, ScriptModuleRecord):
            raise CorruptNetworkError(f'its data.pkl holds a {type(tree).__name__}, not a scripted module')
        tensors: dict[str, torch.Tensor] = {}
        _collect(tree, '', tensors, depth=0)
        return tensors


def _unpickle_archive(path: Path) -> Any:
    """Open the zip, check its layout and byte order, and run the restricted unpickler over ``data.pkl``."""
    if not path.is_file():
        raise CorruptNetworkError('no such file')
    if not zipfile.is_zipfile(path):
        raise CorruptNetworkError('it is not a TorchScript archive (not a zip file)')
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.count('/') == 1 and n.endswith('/data.pkl')]
            if len(pickles) != 1:
                raise CorruptNetworkError('it is a zip file but not a TorchScript archive (no NAME/data.pkl)')
            prefix = pickles[0][:-len('data.pkl')]
            _check_byteorder(archive, prefix)
            data = archive.read(pickles[0])
            reader = StrictReader(data)
            return run_unpickler(_ScriptUnpickler(reader, archive, prefix), reader, len(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as err:
        raise CorruptNetworkError(f'the zip archive is damaged ({type(err).__name__}: {err})') from None


def _check_byteorder(archive: zipfile.ZipFile, prefix: str) -> None:
    """Storages are raw bytes in the saving machine's order (recorded in ``byteorder`` by recent torch)."""
    try:
        order = archive.read(f'{prefix}byteorder').decode('ascii', 'replace').strip()
    except KeyError:
        order = 'little'  # archives older than the byteorder record were written on little-endian machines
    if order != sys.byteorder:
        raise CorruptNetworkError(f'its storages are {order}-endian and this machine is {sys.byteorder}-endian')


def _collect(record: ScriptModuleRecord, prefix: str, out: dict[str, torch.Tensor], depth: int) -> None:
    """Flatten tensors of `record` and its sub-module records into `out` under dotted names."""
    if depth > 64:
        raise CorruptNetworkError('its module tree is nested more than 64 levels deep')
    for name, value in record.attributes.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, ScriptModuleRecord):
            _collect(value, f'{prefix}{name}.', out, depth + 1)
