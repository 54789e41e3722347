"""Write network snapshots in the official StyleGAN2-ADA pickle layout, so stylelens and official tools can read them.

Each module becomes a ``torch_utils.persistence._reconstruct_persistent_obj`` record carrying `module_src`
(by default a stub that raises if run); nested constructor kwargs become ``dnnlib.util.EasyDict`` as in train.py.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import types
from typing import Any, BinaryIO, Callable

import torch

from stylelens.loading.records import EasyDict, reconstruct_persistent_obj

PERSISTENCE_VERSION = 6
DEFAULT_MODULE_SRC = (
    'raise RuntimeError("this network pickle was written by stylelens: the network source code is not stored in it")\n'
)
# Objects written under the official global names instead of their stylelens names.
_OFFICIAL_NAMES = {
    reconstruct_persistent_obj: ('torch_utils.persistence', '_reconstruct_persistent_obj'),
    EasyDict: ('dnnlib.util', 'EasyDict'),
}


def dump_snapshot(
    snapshot: dict,
    file: str | os.PathLike | BinaryIO,
    *,
    protocol: int = 4,
    module_src: str = DEFAULT_MODULE_SRC,
    easydict_kwargs: bool = True,
) -> None:
    """Pickle `snapshot` in the official layout: modules with ``_init_args``/``_init_kwargs`` become persistent records.

    Paths are written atomically. With `easydict_kwargs`, dict values inside ``_init_kwargs`` are written as EasyDict.
    """
    if not 2 <= protocol <= pickle.HIGHEST_PROTOCOL:
        raise ValueError(f'pickle protocol must be between 2 and {pickle.HIGHEST_PROTOCOL}, got {protocol}')

    def write(f: BinaryIO) -> None:
        _SnapshotPickler(f, protocol, module_src, easydict_kwargs).dump(snapshot)

    if isinstance(file, (str, os.PathLike)):
        _write_atomically(os.fspath(file), write)
    else:
        write(file)


def _write_atomically(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call `write` on a temporary file beside `path`, then move it into place (no half-written snapshots)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.stylelens-', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _as_easydict(value: Any) -> Any:
    """Recursively turn dicts into EasyDicts (inside lists and tuples too), as official train.py kwargs are."""
    if isinstance(value, dict):
        return EasyDict((k, _as_easydict(v)) for k, v in value.items())
    if isinstance(value, tuple):
        return tuple(_as_easydict(v) for v in value)
    if isinstance(value, list):
        return [_as_easydict(v) for v in value]
    return value


class _SnapshotPickler(pickle._Pickler):
    """Pure-Python pickler that writes modules as persistent records and uses the official global names."""

    # The base table maps functions to the base-class save_global; route them through our override instead.
    dispatch = {**pickle._Pickler.dispatch, types.FunctionType: lambda pickler, obj: pickler.save_global(obj)}

    def __init__(self, file: BinaryIO, protocol: int, module_src: str, easydict_kwargs: bool) -> None:
        super().__init__(file, protocol)
        self._module_src = module_src
        self._easydict_kwargs = easydict_kwargs

    def reducer_override(self, obj: Any) -> Any:
        """Reduce every torch module to a persistent-object record; leave everything else to plain pickling."""
        if isinstance(obj, torch.nn.Module):
            return reconstruct_persistent_obj, (self._meta(obj),)
        return NotImplemented

    def _meta(self, module: torch.nn.Module) -> dict:
        """The official persistent-object meta for one module."""
        if not all(hasattr(module, a) for a in ('_init_args', '_init_kwargs')):
            raise TypeError(
                f'cannot write a {type(module).__name__} module: it has no _init_args/_init_kwargs, so it could not '
                'be rebuilt from the snapshot'
            )
        state = dict(module.__dict__)
        if self._easydict_kwargs:
            state['_init_kwargs'] = {k: _as_easydict(v) for k, v in module._init_kwargs.items()}
        return dict(
            type='class',
            version=PERSISTENCE_VERSION,
            module_src=self._module_src,
            class_name=type(module).__name__,
            state=state,
        )

    def save_global(self, obj: Any, name: str | None = None) -> None:
        """Write our stand-ins under their official module/name; other globals as usual."""
        official = _OFFICIAL_NAMES.get(obj)
        if official is None:
            super().save_global(obj, name)
            return
        module, qualname = official
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f'{module}\n{qualname}\n'.encode('ascii'))
        self.memoize(obj)
