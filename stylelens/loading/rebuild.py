"""Turn the inert records of a snapshot pickle into our own vendor modules, with the recorded tensors copied in.

Only top-level networks are constructed (from their recorded init kwargs); every sub-module the constructor
builds is then checked against the record tree: same names, same tensor shapes, same scalar attributes.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

import torch

from stylelens.errors import StylelensError
from stylelens.loading.records import LazyTensor, PersistentRecord
from stylelens.vendor.stylegan2_ada import networks

BUILDABLE = {'Generator': networks.Generator, 'Discriminator': networks.Discriminator}

# Scalar attributes that both the record and our module carry; any disagreement means a wrong rebuild.
CHECKED_ATTRIBUTES = ('z_dim', 'c_dim', 'w_dim', 'num_ws', 'img_resolution', 'img_channels', 'resolution',
                      'in_channels', 'out_channels', 'architecture', 'is_last', 'up', 'down', 'activation',
                      'conv_clamp', 'use_noise', 'w_avg_beta', 'num_layers', 'cmap_dim', 'group_size',
                      'num_channels', 'in_features', 'out_features', 'use_fp16')


class NetworkRebuildError(StylelensError):
    """The records do not describe a network stylelens can rebuild exactly."""


def _ensure_stylegan2(record: PersistentRecord) -> None:
    """Refuse alias-free StyleGAN3 generators clearly instead of failing on a missing key later."""
    synthesis = (record.state.get('_modules') or {}).get('synthesis')
    if isinstance(synthesis, PersistentRecord) and 'input' in (synthesis.state.get('_modules') or {}):
        raise NetworkRebuildError('this is an alias-free StyleGAN3 generator (StyleGAN3-T/R); stylelens rebuilds '
                                  'StyleGAN2 architectures (orig, skip, resnet) only')


def _plain(value: Any) -> Any:
    """Recorded kwargs (EasyDicts, OrderedDicts, tuples) as plain Python containers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if hasattr(value, 'item') and getattr(value, 'ndim', None) == 0:
        return value.item()
    return value


def _child(record: PersistentRecord, dotted: str) -> PersistentRecord | None:
    """The descendant record at a dotted path, or None."""
    for name in dotted.split('.'):
        record = (record.state.get('_modules') or {}).get(name) if record is not None else None
    return record


def _fp16_blocks(record: PersistentRecord | None) -> int:
    """How many blocks of a synthesis network / discriminator were recorded with use_fp16."""
    children = (record.state.get('_modules') or {}).values() if record is not None else ()
    return sum(1 for c in children if isinstance(c, PersistentRecord) and c.state.get('use_fp16'))


def init_kwargs(record: PersistentRecord) -> dict:
    """The constructor kwargs of a top-level record, with the defaults it relied on read back from its sub-modules.

    Official train.py leaves default values out of init_kwargs, and the two official code bases differ in some
    defaults (conv_clamp, num_fp16_res, w_avg_beta), so those are taken from what the sub-modules recorded.
    """
    kwargs = _plain(dict(record.state.get('_init_kwargs') or {}))
    if record.class_name == 'Generator':
        options = kwargs.setdefault('synthesis_kwargs', {}) if 'synthesis_kwargs' in kwargs else kwargs
        synthesis = _child(record, 'synthesis')
        first_block = _child(record, 'synthesis.b4.conv1')
        if first_block is not None and 'conv_clamp' not in options:
            options['conv_clamp'] = _plain(first_block.state.get('conv_clamp'))
        if 'num_fp16_res' not in options:
            options['num_fp16_res'] = _fp16_blocks(synthesis)
        mapping = _child(record, 'mapping')
        mapping_kwargs = kwargs.setdefault('mapping_kwargs', {})
        if mapping is not None and 'w_avg_beta' in mapping.state:
            mapping_kwargs.setdefault('w_avg_beta', _plain(mapping.state['w_avg_beta']))
    elif record.class_name == 'Discriminator':
        epilogue_conv = _child(record, 'b4.conv')
        if epilogue_conv is not None and 'conv_clamp' not in kwargs:
            kwargs['conv_clamp'] = _plain(epilogue_conv.state.get('conv_clamp'))
        kwargs.setdefault('num_fp16_res', _fp16_blocks(record))
    return kwargs


def _walk(record: PersistentRecord, prefix: str = '') -> Iterator[tuple[str, PersistentRecord]]:
    """(dotted name, record) for the record and all its descendants."""
    yield prefix, record
    for name, child in (record.state.get('_modules') or {}).items():
        if child is not None:
            yield from _walk(child, f'{prefix}.{name}' if prefix else name)


def _tensors(record: PersistentRecord) -> dict[str, torch.Tensor | LazyTensor]:
    """All recorded parameters and buffers by dotted name (the keys of the official state_dict), lazy ones undecoded."""
    found = {}
    for prefix, rec in _walk(record):
        for group in ('_parameters', '_buffers'):
            for name, tensor in (rec.state.get(group) or {}).items():
                if tensor is not None:
                    found[f'{prefix}.{name}' if prefix else name] = tensor
    return found


def _decoded(tensor: torch.Tensor | LazyTensor) -> torch.Tensor:
    """A recorded tensor, decoded now if the snapshot was loaded with lazy tensors."""
    return tensor.materialize() if isinstance(tensor, LazyTensor) else tensor


def _check_structure(module: torch.nn.Module, record: PersistentRecord, what: str) -> None:
    """Fail unless every sub-module has the recorded class name and scalar attributes."""
    ours = dict(module.named_modules())
    for name, rec in _walk(record):
        sub = ours.get(name)
        label = f'{what}.{name}' if name else what
        if sub is None:
            raise NetworkRebuildError(f'{label} ({rec.class_name}) is in the pickle but not in the network built '
                                      f'from its init kwargs')
        if type(sub).__name__ != rec.class_name:
            raise NetworkRebuildError(f'{label} is a {rec.class_name} in the pickle but a {type(sub).__name__} here')
        for attr in CHECKED_ATTRIBUTES:
            if attr in rec.state and hasattr(sub, attr) and _plain(rec.state[attr]) != getattr(sub, attr):
                raise NetworkRebuildError(f'{label}.{attr} is {rec.state[attr]!r} in the pickle but '
                                          f'{getattr(sub, attr)!r} in the rebuilt network')


def build_checked(cls: Callable[..., torch.nn.Module], args: tuple, kwargs: dict,
                  tensors: Mapping[str, torch.Tensor | LazyTensor], what: str,
                  check: Callable[[torch.nn.Module], None] | None = None) -> torch.nn.Module:
    """Build `cls(*args, **kwargs)` on the meta device, run `check` on it, compare every tensor's name and shape with
    `tensors` (a state_dict of the official layout), and only then put the tensors in: options that declare a
    network the tensors do not fill (or one too big for memory) are refused before anything is allocated."""
    try:
        with torch.device('meta'):
            module = cls(*args, **kwargs)
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as exc:
        raise NetworkRebuildError(f'{what}: cannot build {cls.__name__} from the recorded options '
                                  f'({" ".join(str(exc).split())[:200]})') from None
    if check is not None:
        check(module)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise NetworkRebuildError(f'{what}: tensors do not match the architecture (missing: '
                                  f"{', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(unexpected[:5]) or 'none'})")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise NetworkRebuildError(f'{what}.{name} has shape {list(tensor.shape)} in the file but the network '
                                      f'needs {list(expected[name].shape)}')
    module.load_state_dict({k: _decoded(v).detach() for k, v in tensors.items()}, assign=True)
    unset = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if unset:
        raise NetworkRebuildError(f"{what}: the file does not set {', '.join(unset[:5])}")
    return module.eval().requires_grad_(False)


def rebuild(record: PersistentRecord, what: str) -> torch.nn.Module:
    """Build our module for a Generator/Discriminator record and copy its tensors in (eval mode, no grad)."""
    if record.class_name not in BUILDABLE:
        raise NetworkRebuildError(f"{what} is a {record.class_name!r}, which stylelens cannot rebuild "
                                  f"(known: {', '.join(BUILDABLE)})")
    if record.class_name == 'Generator':
        _ensure_stylegan2(record)
    args = _plain(tuple(record.state.get('_init_args') or ()))
    return build_checked(BUILDABLE[record.class_name], args, init_kwargs(record), _tensors(record), what,
                         lambda module: _check_structure(module, record, what))
