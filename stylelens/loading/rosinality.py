"""rosinality/stylegan2-pytorch checkpoints, read without running anything and rebuilt as official-layout networks.

Three flavours: train.py's (g, d, g_ema, optimizer states, an argparse.Namespace of its options), convert_weight.py's
(g_ema, latent_avg, and g, d with --gen/--disc) and either in torch's pre-1.6 non-zip serialization. All are read
with `torch.load(weights_only=True)`, the Namespace admitted as plain data; the tensors are renamed by
`rosinality_map` and put into our vendor networks with `build_checked`.

w_avg: the checkpoint's `latent_avg` when it has one (convert_weight.py); train.py saves none, and rosinality's
scripts compute `mean_latent(4096)` from fresh random z at run time, so each generator then gets the same estimate
made reproducibly: the mean of its mapping of 4096 z drawn from torch.Generator seed 0.
"""
from __future__ import annotations

import argparse
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from stylelens.errors import StylelensError
from stylelens.loading import rosinality_map as names
from stylelens.loading.rebuild import build_checked
from stylelens.vendor.stylegan2_ada import networks
from stylelens.vendor.stylegan2_ada.ops import setup_filter

W_AVG_SAMPLES = 4096
W_AVG_SEED = 0
FILE_KEYS = {'G': 'g', 'D': 'd', 'G_ema': 'g_ema'}
_ALLOWED = 'tensors, dicts, numbers, strings and argparse.Namespace'


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with torch's weights-only unpickler (argparse.Namespace admitted as data only);
    a file that names any other global, or that is truncated or corrupt, is refused in one line."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torch's remarks on damaged streams; the error below says it in one line
            checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        forbidden = re.search(r'GLOBAL (\S+)', str(error))
        if forbidden:
            raise StylelensError(f'{path} refused: its pickle names {forbidden.group(1)}, and a rosinality checkpoint '
                                 f'holds only {_ALLOWED}; nothing in it was run') from None
        raise StylelensError(f'{path} is corrupt: {_first_line(error)}') from None
    except Exception as error:  # a damaged stream fails in torch's restricted loader with many exception types
        raise StylelensError(f'{path} is truncated or corrupt: torch.load cannot read it ({_first_line(error)})') \
            from None
    if not isinstance(checkpoint, dict) or not any(isinstance(checkpoint.get(k), Mapping) for k in FILE_KEYS.values()):
        found = ', '.join(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise StylelensError(f'{path} is a torch file but not a rosinality checkpoint: expected a dict with g_ema, g '
                             f'or d state_dicts (found: {found or "nothing"})')
    return checkpoint


def _first_line(error: BaseException) -> str:
    """The gist of an exception's message in one line: torch's weights-only errors put advice first and the
    reason after 'WeightsUnpickler error:', over many lines and with terminal colour codes."""
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(error))
    reason = re.search(r'WeightsUnpickler error:\s*([^\n]+)', text)
    return reason.group(1).strip()[:200] if reason else (text.strip().splitlines() or [type(error).__name__])[0][:200]


def _unused_filter() -> torch.Tensor:
    """The value of official-only filter buffers the forward pass never reads: the default [1, 3, 3, 1] filter."""
    return setup_filter(networks.DEFAULT_FILTER)


def _check_filters(state: Mapping[str, Any], what: str) -> None:
    """rosinality's blur kernels are 4x4 (train.py never changes blur_kernel); other sizes are refused."""
    for key, tensor in state.items():
        if key.endswith('kernel') and isinstance(tensor, torch.Tensor) and tuple(tensor.shape) != (4, 4):
            raise StylelensError(f'{what}.{key} is a {list(tensor.shape)} kernel; stylelens reads rosinality '
                                 f'networks with the default 4-tap blur_kernel only')


def generator_kwargs(structure: dict, what: str) -> dict:
    """The official Generator init kwargs of a rosinality Generator: skip G, lr_mlp 0.01, no clamp, no fp16."""
    return dict(z_dim=structure['style_dim'], c_dim=0, w_dim=structure['style_dim'], img_resolution=structure['size'],
                img_channels=3, mapping_kwargs=dict(num_layers=structure['n_mlp']),
                synthesis_kwargs=dict(**names.channel_options(structure['channels'], what), num_fp16_res=0,
                                      conv_clamp=None))


def discriminator_kwargs(structure: dict, what: str) -> dict:
    """The official Discriminator init kwargs of a rosinality Discriminator: resnet D, minibatch-std group 4."""
    return dict(c_dim=0, img_resolution=structure['size'], img_channels=3, architecture='resnet',
                **names.channel_options(structure['channels'], what), num_fp16_res=0, conv_clamp=None,
                epilogue_kwargs=dict(mbstd_group_size=4))


def mean_w(G: networks.Generator, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> torch.Tensor:
    """The mean of G's mapping of `samples` z from a seeded generator: rosinality's mean_latent, reproducibly."""
    z = torch.randn([samples, G.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return torch.cat([G.mapping(chunk, None)[:, 0] for chunk in z.split(512)]).mean(0)


def build_generator(state: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None,
                    what: str) -> networks.Generator:
    """Our Generator holding a rosinality Generator state_dict, w_avg set from `latent_avg` or estimated."""
    _check_filters(state, what)
    structure = names.generator_structure(state, what)
    if latent_avg is not None and latent_avg.numel() != structure['style_dim']:
        raise StylelensError(f"{what}: latent_avg has {latent_avg.numel()} values but style_dim is "
                             f"{structure['style_dim']}")
    plan = names.generator_plan(structure['size'], structure['n_mlp'])
    tensors = names.to_official(state, plan, _unused_filter(), what)
    tensors['mapping.w_avg'] = torch.zeros([structure['style_dim']])
    G = build_checked(networks.Generator, (), generator_kwargs(structure, what), tensors, what)
    with torch.no_grad():
        G.mapping.w_avg.copy_(latent_avg if latent_avg is not None else mean_w(G))
    return G


def build_discriminator(state: Mapping[str, torch.Tensor], what: str) -> networks.Discriminator:
    """Our resnet Discriminator holding a rosinality Discriminator state_dict."""
    _check_filters(state, what)
    structure = names.discriminator_structure(state, what)
    tensors = names.to_official(state, names.discriminator_plan(structure['size']), _unused_filter(), what)
    return build_checked(networks.Discriminator, (), discriminator_kwargs(structure, what), tensors, what)


def _latent_avg(checkpoint: dict, path: Path) -> torch.Tensor | None:
    """The checkpoint's latent_avg as a 1-D float32 tensor ([style_dim] or [1, style_dim] stored), or None."""
    value = checkpoint.get('latent_avg')
    if value is None:
        return None
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.ndim > 2:
        raise StylelensError(f'{path}: latent_avg is not a [style_dim] float tensor')
    return value.detach().reshape(-1).to(torch.float32)


def load_rosinality_networks(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The networks `keys` (of G, D, G_ema) of a rosinality checkpoint as official-layout modules (None for those the
    file lacks), with training_set_kwargs and augment_pipe None; a file without any of them is refused."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    present = [k for k in keys if isinstance(checkpoint.get(FILE_KEYS[k]), Mapping)]
    if not present:
        held = ', '.join(k for k in FILE_KEYS.values() if isinstance(checkpoint.get(k), Mapping))
        raise StylelensError(f"{path} holds no {' or '.join(FILE_KEYS[k] for k in keys)} (it has: {held})")
    latent_avg = _latent_avg(checkpoint, path)
    result: dict[str, Any] = dict.fromkeys(keys)
    for key in present:
        state, what = checkpoint[FILE_KEYS[key]], f'{path.name}: {FILE_KEYS[key]}'
        if key == 'D':
            result[key] = build_discriminator(state, what)
        else:
            result[key] = build_generator(state, latent_avg, what)
    return {**result, 'training_set_kwargs': None, 'augment_pipe': None}
