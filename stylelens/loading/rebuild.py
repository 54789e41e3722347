"""Turn the inert records of a snapshot pickle into our own vendor modules, with the recorded tensors copied in.

Only top-level networks are constructed (from their recorded init kwargs); every sub-module the constructor
builds is then checked against the record tree: same names, same tensor shapes, same scalar attributes. StyleGAN2
generators and discriminators are rebuilt with `vendor.stylegan2_ada`, alias-free StyleGAN3 generators (told apart
by their Fourier-feature synthesis input) with `vendor.stylegan3`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from stylelens.errors import StylelensError
from stylelens.loading.records import LazyTensor, PersistentRecord
from stylelens.vendor.stylegan2_ada import networks
from stylelens.vendor.stylegan3 import networks as sg3_networks

BUILDABLE = {'Generator': networks.Generator, 'Discriminator': networks.Discriminator}

# Attributes that both the record and our module carry; any disagreement means a wrong rebuild. The StyleGAN3
# ones pin each layer's geometry: sizes, sampling rates, cutoffs, filters and padding.
CHECKED_ATTRIBUTES = ('z_dim', 'c_dim', 'w_dim', 'num_ws', 'img_resolution', 'img_channels', 'resolution',
                      'in_channels', 'out_channels', 'architecture', 'is_last', 'up', 'down', 'activation',
                      'conv_clamp', 'use_noise', 'w_avg_beta', 'num_layers', 'cmap_dim', 'group_size',
                      'num_channels', 'in_features', 'out_features', 'use_fp16',
                      'num_critical', 'margin_size', 'output_scale', 'layer_names', 'channels', 'size',
                      'sampling_rate', 'bandwidth', 'is_torgb', 'is_critically_sampled', 'in_size', 'out_size',
                      'in_sampling_rate', 'out_sampling_rate', 'tmp_sampling_rate', 'in_cutoff', 'out_cutoff',
                      'in_half_width', 'out_half_width', 'conv_kernel', 'magnitude_ema_beta', 'up_factor',
                      'down_factor', 'up_taps', 'down_taps', 'down_radial', 'padding')

# StyleGAN3 options official train.py may leave out, read back from what the synthesis network recorded.
SG3_SYNTHESIS_ATTRIBUTES = ('num_layers', 'num_critical', 'margin_size', 'output_scale', 'num_fp16_res')
SG3_LAYER_ATTRIBUTES = ('conv_clamp', 'magnitude_ema_beta')


class NetworkRebuildError(StylelensError):
    """The records do not describe a network stylelens can rebuild exactly."""


def is_stylegan3(record: PersistentRecord) -> bool:
    """True for an alias-free StyleGAN3 generator record (T or R): its synthesis network starts from Fourier
    features (`synthesis.input`, a SynthesisInput) instead of a constant block."""
    found = _child(record, 'synthesis.input')
    return record.class_name == 'Generator' and found is not None and found.class_name == 'SynthesisInput'


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
    return record if isinstance(record, PersistentRecord) else None


def _same(recorded: Any, ours: Any) -> bool:
    """Whether a recorded attribute equals ours: exactly for ints, strings and lists, to rounding for floats,
    element-wise for numpy arrays (StyleGAN3 sizes)."""
    recorded, ours = _plain(recorded), _plain(ours)
    if isinstance(recorded, np.ndarray) or isinstance(ours, np.ndarray):
        return np.shape(recorded) == np.shape(ours) and bool(np.all(np.asarray(recorded) == np.asarray(ours)))
    if isinstance(recorded, float) or isinstance(ours, float):
        return (isinstance(recorded, (int, float)) and isinstance(ours, (int, float))
                and math.isclose(recorded, ours, rel_tol=1e-9, abs_tol=1e-12))
    return recorded == ours


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
        _mapping_defaults(record, kwargs)
    elif record.class_name == 'Discriminator':
        epilogue_conv = _child(record, 'b4.conv')
        if epilogue_conv is not None and 'conv_clamp' not in kwargs:
            kwargs['conv_clamp'] = _plain(epilogue_conv.state.get('conv_clamp'))
        kwargs.setdefault('num_fp16_res', _fp16_blocks(record))
    return kwargs


def _mapping_defaults(record: PersistentRecord, kwargs: dict) -> None:
    """Fill the generator's mapping_kwargs with the w_avg decay its mapping network recorded, where left out."""
    mapping = _child(record, 'mapping')
    mapping_kwargs = kwargs.setdefault('mapping_kwargs', {})
    if mapping is not None and 'w_avg_beta' in mapping.state:
        mapping_kwargs.setdefault('w_avg_beta', _plain(mapping.state['w_avg_beta']))


def sg3_init_kwargs(record: PersistentRecord) -> dict:
    """The constructor kwargs of a StyleGAN3 generator record, with every option official train.py may leave
    out read back from the sub-modules: synthesis depth and margins, fp16 layers, conv kernel and clamp, filter
    size, radial filters, the activation's oversampling and the first cutoff; the geometry check catches the rest.
    """
    kwargs = _plain(dict(record.state.get('_init_kwargs') or {}))
    synthesis = _child(record, 'synthesis')
    for attr in SG3_SYNTHESIS_ATTRIBUTES:
        if synthesis is not None and attr in synthesis.state:
            kwargs.setdefault(attr, _plain(synthesis.state[attr]))
    source = _child(record, 'synthesis.input')
    if source is not None and 'bandwidth' in source.state:
        kwargs.setdefault('first_cutoff', _plain(source.state['bandwidth']))
    names = _plain(synthesis.state.get('layer_names') or []) if synthesis is not None else []
    layers = [layer for layer in (_child(synthesis, name) for name in names) if layer is not None]
    for attr in SG3_LAYER_ATTRIBUTES:
        if layers and attr in layers[0].state:
            kwargs.setdefault(attr, _plain(layers[0].state[attr]))
    inner = [layer.state for layer in layers if not layer.state.get('is_torgb')]
    if inner and 'conv_kernel' in inner[0]:
        kwargs.setdefault('conv_kernel', _plain(inner[0]['conv_kernel']))
    if any('down_radial' in state for state in inner):
        kwargs.setdefault('use_radial_filters', any(bool(state.get('down_radial')) for state in inner))
    resampled = [s for s in inner if _plain(s.get('up_factor', 1)) > 1 and 'up_taps' in s]
    if resampled:
        kwargs.setdefault('filter_size', _plain(resampled[0]['up_taps']) // _plain(resampled[0]['up_factor']))
    if inner and all(k in inner[0] for k in ('tmp_sampling_rate', 'in_sampling_rate', 'out_sampling_rate')):
        rates = [_plain(inner[0][k]) for k in ('tmp_sampling_rate', 'in_sampling_rate', 'out_sampling_rate')]
        kwargs.setdefault('lrelu_upsampling', int(round(rates[0] / max(rates[1:]))))
    _mapping_defaults(record, kwargs)
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
            if attr in rec.state and hasattr(sub, attr) and not _same(rec.state[attr], getattr(sub, attr)):
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
    args = _plain(tuple(record.state.get('_init_args') or ()))
    if is_stylegan3(record):
        cls, kwargs = sg3_networks.Generator, sg3_init_kwargs(record)
    else:
        cls, kwargs = BUILDABLE[record.class_name], init_kwargs(record)
    return build_checked(cls, args, kwargs, _tensors(record), what, lambda module: _check_structure(module, record, what))
