"""stylelens safetensors files: network weights plus the build options (format, class, init kwargs) in the metadata.

safetensors holds tensors and a string-to-string metadata table and nothing executable, so reading one runs no code
from it. Tensors are named `<network>.<official state_dict key>` (`G_ema.mapping.fc0.weight`); the metadata's
`networks` entry is JSON: per network its module, class and constructor arguments, or `{"same_as": "G_ema"}`
when G is the very same network (a `stylelens train` run). Only our StyleGAN2 classes are built from it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from stylelens.errors import StylelensError
from stylelens.loading.rebuild import build_checked
from stylelens.outputs import atomic_path, to_jsonable
from stylelens.vendor.stylegan2_ada import networks
from stylelens.vendor.stylegan3 import networks as networks_sg3

FORMAT = 'stylelens-networks'
FORMAT_VERSION = '1'
NETWORK_KEYS = ('G', 'D', 'G_ema')
CLASSES = {(cls.__module__, cls.__name__): cls
           for cls in (networks.Generator, networks.Discriminator, networks_sg3.Generator)}


def _spec(net: torch.nn.Module, key: str) -> dict[str, Any]:
    """The build options of one network; anything but our StyleGAN2 classes is refused in one line."""
    if CLASSES.get((type(net).__module__, type(net).__name__)) is not type(net):
        raise StylelensError(f'cannot write {key} as safetensors: it is a {type(net).__module__}.'
                             f'{type(net).__name__}, and stylelens safetensors files hold StyleGAN2 '
                             f'Generator/Discriminator and StyleGAN3 Generator networks only')
    spec = dict(module=type(net).__module__, class_name=type(net).__name__, init_args=list(net._init_args),
                init_kwargs=net._init_kwargs)
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise StylelensError(f'cannot write {key} as safetensors: its init kwargs are not plain data ({error})') \
            from None
    return spec


def safetensors_payload(nets: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """(tensors, metadata, report lines) for networks as load_network returns them."""
    specs: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    lines = []
    for key in NETWORK_KEYS:
        net = nets.get(key)
        if net is None:
            continue
        if key == 'G' and net is nets.get('G_ema'):
            specs[key] = {'same_as': 'G_ema'}
            lines.append('G: the same network as G_ema, stored once')
            continue
        specs[key] = _spec(net, key)
        state = net.state_dict()
        tensors.update({f'{key}.{name}': t.detach().cpu().contiguous().clone() for name, t in state.items()})
        lines.append(f"{key}: {len(state)} tensors as they are, with {type(net).__name__}'s init kwargs")
    if not specs:
        raise StylelensError('the network has no G, D or G_ema to write')
    metadata = dict(format=FORMAT, format_version=FORMAT_VERSION, networks=json.dumps(specs),
                    training_set_kwargs=json.dumps(to_jsonable(nets.get('training_set_kwargs'))))
    if nets.get('augment_pipe') is not None:
        lines.append('augment_pipe: not written (stylelens keeps it only as an inert record)')
    return tensors, metadata, lines


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a payload from `safetensors_payload` to `path` atomically."""
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # safetensors creates files readable by their owner only
    return Path(path)


def _read_specs(handle: Any, path: Path) -> tuple[dict[str, Any], Any]:
    """The `networks` and training_set_kwargs entries of a stylelens safetensors file's metadata."""
    metadata = handle.metadata() or {}
    if metadata.get('format') != FORMAT:
        raise StylelensError(f'{path} is a safetensors file without stylelens build options (metadata format is '
                             f"{metadata.get('format')!r}, not {FORMAT!r}): stylelens cannot tell which network to build")
    if metadata.get('format_version') != FORMAT_VERSION:
        raise StylelensError(f"{path} is stylelens safetensors version {metadata.get('format_version')!r}; this "
                             f'stylelens reads version {FORMAT_VERSION}')
    try:
        specs = json.loads(metadata.get('networks', ''))
        training_set_kwargs = json.loads(metadata.get('training_set_kwargs', 'null'))
    except json.JSONDecodeError:
        raise StylelensError(f'{path}: its networks metadata is not valid JSON') from None
    if not isinstance(specs, dict):
        raise StylelensError(f'{path}: its networks metadata is not a JSON object')
    return specs, training_set_kwargs


def _build(handle: Any, specs: dict[str, Any], key: str, path: Path) -> torch.nn.Module:
    """One network from its spec and its `key.`-prefixed tensors (float32 only), checked by build_checked."""
    spec = specs.get(key)
    cls = CLASSES.get((spec.get('module'), spec.get('class_name'))) if isinstance(spec, dict) else None
    if cls is None or not isinstance(spec.get('init_args'), list) or not isinstance(spec.get('init_kwargs'), dict):
        raise StylelensError(f"{path}: {key} is not a StyleGAN2/StyleGAN3 network spec stylelens builds "
                             f"(known classes: {', '.join(f'{m}.{c}' for m, c in CLASSES)})")
    prefix = f'{key}.'
    tensors = {name[len(prefix):]: handle.get_tensor(name) for name in handle.keys() if name.startswith(prefix)}
    wrong = next((name for name, t in tensors.items() if t.dtype != torch.float32), None)
    if wrong is not None:
        raise StylelensError(f'{path}: {key}.{wrong} is {tensors[wrong].dtype}; stylelens networks are float32')
    return build_checked(cls, tuple(spec['init_args']), spec['init_kwargs'], tensors, f'{path.name}: {key}')


def load_safetensors_networks(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The networks `keys` (of G, D, G_ema) of a stylelens safetensors file (None for those it lacks), with
    training_set_kwargs from its metadata and augment_pipe None; a file without any of them is refused."""
    path = Path(path)
    try:
        with safe_open(path, framework='pt', device='cpu') as handle:
            specs, training_set_kwargs = _read_specs(handle, path)
            wanted = {k: specs[k].get('same_as', k) if isinstance(specs.get(k), dict) else None for k in keys}
            if not any(wanted.values()):
                raise StylelensError(f"{path} holds no {' or '.join(keys)} (it has: {', '.join(specs) or 'nothing'})")
            built = {source: _build(handle, specs, source, path) for source in set(wanted.values()) if source}
    except SafetensorError as error:
        raise StylelensError(f'{path} is truncated or corrupt: safetensors cannot read it ({error})') from None
    result: dict[str, Any] = {k: built.get(source) if source else None for k, source in wanted.items()}
    return {**result, 'training_set_kwargs': training_set_kwargs, 'augment_pipe': None}
