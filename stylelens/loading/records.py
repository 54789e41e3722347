"""What a snapshot pickle loads into: network modules as plain-data records, lazy tensors, and the EasyDict stand-in.

`reconstruct_persistent_obj` stands in for ``torch_utils.persistence._reconstruct_persistent_obj``: it turns a
module's record into a `PersistentRecord` and only hashes the module's embedded source, never running it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from stylelens.loading.snapshot_file import CorruptNetworkError

SUPPORTED_PERSISTENCE_VERSIONS = (6,)


class EasyDict(dict):
    """A dict with attribute access; stands in for ``dnnlib.util.EasyDict`` so dnnlib is never imported."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith('__'):
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
        return tuple(to_plain(self.state.get('_init_args', ())))

    @property
    def init_kwargs(self) -> dict:
        """Keyword constructor arguments, with nested EasyDicts turned into plain dicts."""
        return to_plain(dict(self.state.get('_init_kwargs') or {}))

    def parameters(self) -> dict[str, torch.Tensor | LazyTensor | None]:
        """The module's own parameters by name (None for unset ones)."""
        return dict(self.state.get('_parameters') or {})

    def buffers(self) -> dict[str, torch.Tensor | LazyTensor | None]:
        """The module's own buffers by name, persistent or not (None for unset ones)."""
        return dict(self.state.get('_buffers') or {})

    def children(self) -> dict[str, PersistentRecord | None]:
        """Direct sub-module records by attribute name."""
        return dict(self.state.get('_modules') or {})

    def state_dict(self, prefix: str = '') -> dict[str, torch.Tensor | LazyTensor]:
        """Tensors of this module tree under dotted names, in ``torch.nn.Module.state_dict`` order."""
        skipped = set(self.state.get('_non_persistent_buffers_set') or ())
        tensors = {prefix + k: v for k, v in self.parameters().items() if v is not None}
        tensors.update((prefix + k, v) for k, v in self.buffers().items() if v is not None and k not in skipped)
        for name, child in self.children().items():
            if child is not None:
                tensors.update(child.state_dict(f'{prefix}{name}.'))
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

    __slots__ = ('shape', '_build', '_tensor')

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
        return f'LazyTensor(shape={list(self.shape)})'


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


def reconstruct_persistent_obj(meta: object) -> PersistentRecord:
    """Turn an official persistent-object record into a `PersistentRecord`, hashing but never running its source."""
    if not isinstance(meta, dict):
        raise CorruptNetworkError('a network record is not a dict')
    kind, version = meta.get('type'), meta.get('version')
    if kind != 'class':
        raise CorruptNetworkError(f"a network record has type {kind!r}; stylelens only reads type 'class'")
    if version not in SUPPORTED_PERSISTENCE_VERSIONS:
        raise CorruptNetworkError(
            f'a network record uses persistence format version {version!r}; stylelens reads version '
            + ', '.join(map(str, SUPPORTED_PERSISTENCE_VERSIONS))
        )
    class_name, source, state = meta.get('class_name'), meta.get('module_src'), meta.get('state')
    if not isinstance(class_name, str) or not class_name.isidentifier():
        raise CorruptNetworkError(f'a network record has an invalid class name {class_name!r}')
    if not isinstance(source, str) or not isinstance(state, dict):
        raise CorruptNetworkError(f'the {class_name} record lacks its source text or its state')
    digest = hashlib.sha256(source.encode('utf-8', 'surrogatepass')).hexdigest()
    return PersistentRecord(class_name=class_name, state=dict(state), module_src_sha256=digest)
