"""Turn the inert records of a snapshot pickle into our own vendor modules, with the recorded tensors copied in.

Only top-level networks are constructed (from their recorded init kwargs); every sub-module the constructor
builds is then checked against the record tree: same names, same tensor shapes, same scalar attributes.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch

from stylelens.errors import StylelensError
from stylelens.loading.safe_pickle import PersistentRecord
from stylelens.vendor.stylegan2_ada import networks

BUILDABLE = {'Generator': networks.Generator, 'Discriminator': networks.Discriminator}
INERT = {'AugmentPipe'}

# Defaults that differ in the stylegan3 repository's copy of the StyleGAN2 networks; official train.py leaves
# default values out of init_kwargs, so they must be supplied when rebuilding.
STYLEGAN3_REPO_DEFAULTS = {
    'Generator': {'conv_clamp': 256, 'num_fp16_res': 4},
    'Discriminator': {'conv_clamp': 256, 'num_fp16_res': 4},
}
STYLEGAN3_REPO_MAPPING_DEFAULTS = {'w_avg_beta': 0.998}

# Scalar attributes that both the record and our module carry; any disagreement means a wrong rebuild.
CHECKED_ATTRIBUTES = ('z_dim', 'c_dim', 'w_dim', 'num_ws', 'img_resolution', 'img_channels', 'resolution',
                      'in_channels', 'out_channels', 'architecture', 'is_last', 'up', 'down', 'activation',
                      'conv_clamp', 'use_noise', 'w_avg_beta', 'num_layers', 'cmap_dim', 'group_size',
                      'num_channels', 'in_features', 'out_features')


class NetworkRebuildError(StylelensError):
    """The records do not describe a network stylelens can rebuild exactly."""


def network_flavor(record: PersistentRecord) -> str:
    """'stylegan2-ada' or 'stylegan3-repo' (StyleGAN2 pickled by the stylegan3 repository), from recorded state.

    Only the stylegan3 repository's FullyConnectedLayer records `in_features`; every network has such layers.
    """
    for _, rec in _walk(record):
        if rec.class_name == 'FullyConnectedLayer':
            return 'stylegan3-repo' if 'in_features' in rec.state else 'stylegan2-ada'
    return 'stylegan2-ada'


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


def init_kwargs(record: PersistentRecord, flavor: str) -> dict:
    """The constructor kwargs for a top-level record, with the flavour's implicit defaults made explicit."""
    kwargs = _plain(dict(record.state.get('_init_kwargs') or {}))
    if flavor != 'stylegan3-repo':
        return kwargs
    defaults = STYLEGAN3_REPO_DEFAULTS.get(record.class_name, {})
    if record.class_name == 'Generator':
        synthesis = kwargs.get('synthesis_kwargs', kwargs)
        for key, value in defaults.items():
            synthesis.setdefault(key, value)
        mapping = kwargs.setdefault('mapping_kwargs', {})
        for key, value in STYLEGAN3_REPO_MAPPING_DEFAULTS.items():
            mapping.setdefault(key, value)
    else:
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
    return kwargs


def _walk(record: PersistentRecord, prefix: str = '') -> Iterator[tuple[str, PersistentRecord]]:
    """(dotted name, record) for the record and all its descendants."""
    yield prefix, record
    for name, child in (record.state.get('_modules') or {}).items():
        if child is not None:
            yield from _walk(child, f'{prefix}.{name}' if prefix else name)


def _tensors(record: PersistentRecord) -> dict[str, torch.Tensor]:
    """All recorded parameters and buffers by dotted name (the keys of the official state_dict)."""
    found = {}
    for prefix, rec in _walk(record):
        for group in ('_parameters', '_buffers'):
            for name, tensor in (rec.state.get(group) or {}).items():
                if tensor is not None:
                    found[f'{prefix}.{name}' if prefix else name] = tensor
    return found


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


def rebuild(record: PersistentRecord, flavor: str, what: str) -> torch.nn.Module:
    """Build our module for a Generator/Discriminator record and copy its tensors in (eval mode, no grad)."""
    if record.class_name not in BUILDABLE:
        raise NetworkRebuildError(f"{what} is a {record.class_name!r}, which stylelens cannot rebuild "
                                  f"(known: {', '.join(BUILDABLE)})")
    if record.class_name == 'Generator':
        _ensure_stylegan2(record)
    args = _plain(tuple(record.state.get('_init_args') or ()))
    kwargs = init_kwargs(record, flavor)
    try:
        with torch.device('meta'):
            module = BUILDABLE[record.class_name](*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise NetworkRebuildError(f'{what}: cannot build {record.class_name} from the recorded init kwargs '
                                  f'({exc})') from None
    _check_structure(module, record, what)
    expected = module.state_dict()
    recorded = _tensors(record)
    missing = sorted(set(expected) - set(recorded))
    unexpected = sorted(set(recorded) - set(expected))
    if missing or unexpected:
        raise NetworkRebuildError(f'{what}: tensors do not match the architecture (missing: '
                                  f"{', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(unexpected[:5]) or 'none'})")
    for name, tensor in recorded.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise NetworkRebuildError(f'{what}.{name} has shape {list(tensor.shape)} in the pickle but the network '
                                      f'needs {list(expected[name].shape)}')
    module.load_state_dict({k: v.detach() for k, v in recorded.items()}, assign=True)
    return module.eval().requires_grad_(False)
