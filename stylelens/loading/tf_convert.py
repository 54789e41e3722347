"""TensorFlow StyleGAN2 / StyleGAN2-ADA networks -> official StyleGAN2-ADA PyTorch init kwargs and tensors.

The mapping is the one of NVIDIA's converter (`legacy.py` of stylegan2-ada-pytorch): the same kwargs with the same
defaults (`fmap_base` doubles into `channel_base`, a D without `mbstd_group_size` gets None), the same tensor names
and layouts (HWIO kernels to OIHW, the kernels of TF's transposed up-sampling convolutions flipped, dense weights
transposed, +1 on the modulation biases, `const` and noise maps without their batch axes, `dlatent_avg` to `w_avg`),
and `resample_filter` buffers at the PyTorch defaults, since TF pickles do not store them. It is stricter than
NVIDIA's: every TF variable must find its place, and what the PyTorch architecture cannot express is refused in one
line naming it, never converted in part.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np
import torch

from stylelens.errors import StylelensError
from stylelens.vendor.stylegan2_ada.networks import DEFAULT_FILTER
from stylelens.vendor.stylegan2_ada.ops import setup_filter

Transform = Callable[[np.ndarray], np.ndarray]

# TF static kwargs NVIDIA's converter does not know but which leave the network unchanged at these values.
_DEFAULT_ONLY_KWARGS: dict[str, tuple] = {
    'fmap_decay': (1,), 'fmap_min': (1,), 'fmap_const': (None,), 'normalize_latents': (True,),
    'mapping_func': ('G_mapping',), 'synthesis_func': ('G_synthesis', 'G_synthesis_stylegan2'),
    'use_pagan': (False,), 'use_spectral_norm': (False,), 'adaptive_dropout': (0,), 'score_max': (1,),
    'score_size': (1,),
}
# TF static kwargs that only steer training or TF's runtime (fresh noise, op fusion, dtype), at any value.
_RUNTIME_KWARGS = frozenset({'randomize_noise', 'fused_modconv', 'dtype', 'dlatent_avg_beta', 'truncation_psi_val',
                             'truncation_cutoff_val', 'augment_strength', 'pagan_num', 'pagan_fade'})
# Variables of network families the PyTorch architecture cannot express, with what they are.
_UNSUPPORTED_VARIABLES = (
    (re.compile(r'(.*/)?(ToRGB|FromRGB)_lod\d+/.*'),
     'progressive-growing layers (StyleGAN2 configs A-D, StyleGAN1)'),
    (re.compile(r'(.*/)?LabelConcat/.*'), 'label concatenation in the mapping network (conditional 2019 StyleGAN2)'),
)
_BOOKKEEPING_VARIABLE = 'lod'  # 2019 G_main's level of detail: always 0 once growing is over


class TFConversionError(StylelensError):
    """The TensorFlow network uses something the StyleGAN2-ADA PyTorch networks cannot express, or lacks a part."""


def _plain(value: Any) -> Any:
    """A static kwarg as a plain Python value (numpy scalars as Python numbers, tuples as lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class _StaticKwargs:
    """Reads TF static kwargs the way NVIDIA's converter does and remembers which names were read."""

    def __init__(self, static_kwargs: dict[str, Any], what: str) -> None:
        self.values = static_kwargs
        self.what = what
        self.known: set[str] = set()

    def __call__(self, name: str, default: Any = None, none: Any = None) -> Any:
        """The kwarg's value, `default` when absent and `none` when stored as None (as legacy.py reads it)."""
        self.known.add(name)
        value = _plain(self.values.get(name, default))
        return none if value is None else value

    def doubled(self, name: str, default: int) -> int:
        """2 x an integer kwarg: TF's fmap_base is half of PyTorch's channel_base."""
        value = self(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TFConversionError(f'{self.what}: static kwarg {name} must be an integer (found {value!r})')
        return value * 2

    def refuse_unknown(self) -> None:
        """Refuse kwargs outside NVIDIA's converter unless they are known to leave the network unchanged."""
        for name in sorted(set(self.values) - self.known - _RUNTIME_KWARGS):
            value = _plain(self.values[name])
            accepted = _DEFAULT_ONLY_KWARGS.get(name)
            if accepted is None:
                raise TFConversionError(f'{self.what}: unknown TensorFlow static kwarg {printable(name)}='
                                        f"{_short(value)}; stylelens converts the kwargs of NVIDIA's StyleGAN2(-ADA) "
                                        f'networks only')
            if not any(_same_value(value, a) for a in accepted):
                raise TFConversionError(f'{self.what}: static kwarg {name}={_short(value)} has no counterpart in the '
                                        f'StyleGAN2-ADA PyTorch networks (converted only at '
                                        f"{' or '.join(map(repr, accepted))})")


def _same_value(value: Any, accepted: Any) -> bool:
    """`value == accepted`, without taking True for 1 or 0 for None."""
    if accepted is None or isinstance(accepted, bool) or isinstance(value, bool):
        return value is accepted
    return isinstance(value, (int, float, str)) and value == accepted


def printable(text: str) -> str:
    """`text` as it is when it prints on one line, else its repr: names read from a file may hold control characters."""
    return text if text.isprintable() else repr(text)


def _short(value: Any) -> str:
    """A value's repr cut to one short line for messages."""
    text = ' '.join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + '...'


def generator_kwargs(static_kwargs: dict[str, Any], what: str) -> dict[str, Any]:
    """Generator init kwargs from a TF G's static kwargs, with NVIDIA's converter's names and defaults."""
    kwarg = _StaticKwargs(static_kwargs, what)
    kwargs = dict(
        z_dim=kwarg('latent_size', 512),
        c_dim=kwarg('label_size', 0),
        w_dim=kwarg('dlatent_size', 512),
        img_resolution=kwarg('resolution', 1024),
        img_channels=kwarg('num_channels', 3),
        mapping_kwargs=dict(
            num_layers=kwarg('mapping_layers', 8),
            embed_features=kwarg('label_fmaps', None),
            layer_features=kwarg('mapping_fmaps', None),
            activation=kwarg('mapping_nonlinearity', 'lrelu'),
            lr_multiplier=kwarg('mapping_lrmul', 0.01),
            w_avg_beta=kwarg('w_avg_beta', 0.995, none=1),
        ),
        synthesis_kwargs=dict(
            channel_base=kwarg.doubled('fmap_base', 16384),
            channel_max=kwarg('fmap_max', 512),
            num_fp16_res=kwarg('num_fp16_res', 0),
            conv_clamp=kwarg('conv_clamp', None),
            architecture=kwarg('architecture', 'skip'),
            resample_filter=kwarg('resample_kernel', [1, 3, 3, 1]),
            use_noise=kwarg('use_noise', True),
            activation=kwarg('nonlinearity', 'lrelu'),
        ),
    )
    for ignored in ('truncation_psi', 'truncation_cutoff', 'style_mixing_prob', 'structure'):
        kwarg(ignored)
    kwarg.refuse_unknown()
    return kwargs


def discriminator_kwargs(static_kwargs: dict[str, Any], what: str) -> dict[str, Any]:
    """Discriminator init kwargs from a TF D's static kwargs, with NVIDIA's converter's names and defaults."""
    kwarg = _StaticKwargs(static_kwargs, what)
    kwargs = dict(
        c_dim=kwarg('label_size', 0),
        img_resolution=kwarg('resolution', 1024),
        img_channels=kwarg('num_channels', 3),
        architecture=kwarg('architecture', 'resnet'),
        channel_base=kwarg.doubled('fmap_base', 16384),
        channel_max=kwarg('fmap_max', 512),
        num_fp16_res=kwarg('num_fp16_res', 0),
        conv_clamp=kwarg('conv_clamp', None),
        cmap_dim=kwarg('mapping_fmaps', None),
        block_kwargs=dict(
            activation=kwarg('nonlinearity', 'lrelu'),
            resample_filter=kwarg('resample_kernel', [1, 3, 3, 1]),
            freeze_layers=kwarg('freeze_layers', 0),
        ),
        mapping_kwargs=dict(
            num_layers=kwarg('mapping_layers', 0),
            embed_features=kwarg('mapping_fmaps', None),
            layer_features=kwarg('mapping_fmaps', None),
            activation=kwarg('nonlinearity', 'lrelu'),
            lr_multiplier=kwarg('mapping_lrmul', 0.1),
        ),
        epilogue_kwargs=dict(
            mbstd_group_size=kwarg('mbstd_group_size', None),
            mbstd_num_channels=kwarg('mbstd_num_features', 1),
            activation=kwarg('nonlinearity', 'lrelu'),
        ),
    )
    kwarg('structure')
    kwarg.refuse_unknown()
    return kwargs


def refuse_unsupported_variables(variables: dict[str, np.ndarray], what: str) -> None:
    """Refuse network families the PyTorch architecture cannot express, named by one of their variables."""
    for name in variables:
        for pattern, family in _UNSUPPORTED_VARIABLES:
            if pattern.fullmatch(name):
                raise TFConversionError(f'{what}: {family} cannot be converted to the StyleGAN2-ADA PyTorch '
                                        f'networks (TF variable {printable(name)})')
    lod = variables.get(_BOOKKEEPING_VARIABLE)
    if lod is not None and (lod.size != 1 or float(lod.reshape(-1)[0]) != 0):
        raise TFConversionError(f'{what}: TF variable lod is {_short(lod.tolist())}: a network in the middle of '
                                f'progressive growing cannot be converted')


# --- value layouts ---------------------------------------------------------------------------------------------

def _same(value: np.ndarray) -> np.ndarray:
    """Biases, noise strengths and dlatent_avg have the same layout in both."""
    return value


def _weight(flip: bool = False) -> Transform:
    """TF weight layout -> PyTorch: conv kernels HWIO -> OIHW (flipped for TF's transposed up-sampling convs),
    dense weights [in, out] -> [out, in]."""

    def convert(value: np.ndarray) -> np.ndarray:
        if value.ndim == 4:
            return (value[::-1, ::-1] if flip else value).transpose(3, 2, 0, 1)
        if value.ndim == 2:
            return value.T
        raise ValueError(f'a weight must be 2-D or 4-D, found shape {list(value.shape)}')

    return convert


def _plus_one(value: np.ndarray) -> np.ndarray:
    """TF adds 1 to the modulation bias at run time; PyTorch stores it (bias_init=1)."""
    return value + 1


def _batch_item(value: np.ndarray) -> np.ndarray:
    """`const` [1, C, 4, 4] -> [C, 4, 4]."""
    if value.ndim < 1 or value.shape[0] != 1:
        raise ValueError(f'expected a leading batch axis of 1, found shape {list(value.shape)}')
    return value[0]


def _noise_map(value: np.ndarray) -> np.ndarray:
    """A noise input [1, 1, R, R] -> [R, R]."""
    return _batch_item(_batch_item(value))


# --- where each PyTorch tensor comes from ----------------------------------------------------------------------

_G_LAYER_SCOPES = {'conv0': 'Conv0_up', 'conv1': 'Conv1', 'torgb': 'ToRGB', 'skip': 'Skip'}
_LAYER_PARAMS = {'weight': 'weight', 'bias': 'bias', 'noise_strength': 'noise_strength',
                 'affine.weight': 'mod_weight', 'affine.bias': 'mod_bias'}
_D_LAYER_SCOPES = {'fromrgb': 'FromRGB', 'conv0': 'Conv0', 'conv1': 'Conv1_down', 'skip': 'Skip'}
_D_EPILOGUE_SCOPES = {'fromrgb': '4x4/FromRGB', 'conv': '4x4/Conv', 'fc': '4x4/Dense0', 'out': 'Output'}


def _generator_source(name: str) -> tuple[str, Transform] | None:
    """The TF variable (component-prefixed) and layout change that fill generator tensor `name`."""
    if name == 'mapping.w_avg':
        return 'dlatent_avg', _same
    if name == 'synthesis.b4.const':
        return 'synthesis/4x4/Const/const', _batch_item
    match = re.fullmatch(r'mapping\.(embed|fc(\d+))\.(weight|bias)', name)
    if match:
        scope = 'LabelEmbed' if match[1] == 'embed' else f'Dense{match[2]}'
        return f'mapping/{scope}/{match[3]}', _weight() if match[3] == 'weight' else _same
    match = re.fullmatch(r'synthesis\.b(\d+)\.(conv0|conv1)\.noise_const', name)
    if match:
        layer_index = 2 * int(math.log2(int(match[1]))) - (5 if match[2] == 'conv0' else 4)
        return f'synthesis/noise{layer_index}', _noise_map
    match = re.fullmatch(r'synthesis\.b(\d+)\.(conv0|conv1|torgb|skip)\.(.+)', name)
    if match and match[3] in _LAYER_PARAMS:
        res, layer, param = int(match[1]), match[2], match[3]
        scope = '4x4/Conv' if (res, layer) == (4, 'conv1') else f'{res}x{res}/{_G_LAYER_SCOPES[layer]}'
        transform = {'weight': _weight(flip=layer in ('conv0', 'skip')), 'affine.weight': _weight(),
                     'affine.bias': _plus_one}.get(param, _same)
        return f'synthesis/{scope}/{_LAYER_PARAMS[param]}', transform
    return None


def _discriminator_source(name: str) -> tuple[str, Transform] | None:
    """The TF variable and layout change that fill discriminator tensor `name`."""
    match = re.fullmatch(r'b(\d+)\.(\w+)\.(weight|bias)', name)
    if match:
        res, layer, param = int(match[1]), match[2], match[3]
        if res == 4:
            scope = _D_EPILOGUE_SCOPES.get(layer)
        else:
            scope = _D_LAYER_SCOPES.get(layer) and f'{res}x{res}/{_D_LAYER_SCOPES[layer]}'
        return (f'{scope}/{param}', _weight() if param == 'weight' else _same) if scope else None
    match = re.fullmatch(r'mapping\.(embed|fc(\d+))\.(weight|bias)', name)
    if match:
        scope = 'LabelEmbed' if match[1] == 'embed' else f'Mapping{match[2]}'
        return f'{scope}/{match[3]}', _weight() if match[3] == 'weight' else _same
    return None


def _default_filter(module: torch.nn.Module, name: str) -> torch.Tensor:
    """The `resample_filter` buffer `name` as the PyTorch constructor makes it (TF pickles do not store filters)."""
    owner = module.get_submodule(name.rpartition('.')[0])
    return setup_filter(getattr(owner, '_init_kwargs', {}).get('resample_filter', DEFAULT_FILTER))


def _convert(module: torch.nn.Module, variables: dict[str, np.ndarray], what: str,
             source: Callable[[str], tuple[str, Transform] | None]) -> dict[str, torch.Tensor]:
    """Every tensor of `module`'s state_dict from the TF variables; refuse missing and unused variables."""
    tensors, used = {}, set()
    for name in module.state_dict():
        if name.endswith('resample_filter'):
            tensors[name] = _default_filter(module, name)
            continue
        found = source(name)
        if found is None:
            raise TFConversionError(f'{what}: stylelens knows no TF variable for {name}')
        tf_name, transform = found
        if tf_name not in variables:
            raise TFConversionError(f'{what}: the pickle has no TF variable {tf_name}, which {name} needs '
                                    f'(the static kwargs describe a network these variables do not fill)')
        try:
            value = np.array(transform(variables[tf_name]), dtype=np.float32, order='C')
        except ValueError as err:
            raise TFConversionError(f'{what}: TF variable {tf_name} cannot fill {name}: {err}') from None
        tensors[name] = torch.from_numpy(value)
        used.add(tf_name)
    unused = [printable(name) for name in sorted(set(variables) - used - {_BOOKKEEPING_VARIABLE})]
    if unused:
        raise TFConversionError(f"{what}: TF variable{'s' if len(unused) > 1 else ''} {', '.join(unused[:5])}"
                                f"{' ...' if len(unused) > 5 else ''} would be left unused: the static kwargs "
                                f'describe a different network than the variables')
    return tensors


def generator_tensors(module: torch.nn.Module, variables: dict[str, np.ndarray], what: str) -> dict[str, torch.Tensor]:
    """The official-layout state_dict of generator `module` (built from `generator_kwargs`) from TF variables."""
    return _convert(module, variables, what, _generator_source)


def discriminator_tensors(module: torch.nn.Module, variables: dict[str, np.ndarray],
                          what: str) -> dict[str, torch.Tensor]:
    """The official-layout state_dict of discriminator `module` from TF variables."""
    return _convert(module, variables, what, _discriminator_source)
