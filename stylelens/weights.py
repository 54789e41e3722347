"""A network's weights as data: one layer's tensors, their statistics and printout, or every tensor to one .npz."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylelens.errors import StylelensError
from stylelens.outputs import atomic_path, atomic_write_text, save_npz
from stylelens.probes import resolve_name
from stylelens.viz import kernel_grid_figure

NEAR_ZERO = 1e-3  # a value counts as near zero when |x| < NEAR_ZERO * max|x|
SHAPE_WORDS = {0: 'Scalar', 1: 'Vector', 2: 'Matrix', 4: 'Feature map'}


def layer_tensors(net: torch.nn.Module, layer: str) -> dict[str, torch.Tensor]:
    """The named module's own parameters and buffers (not its sub-modules'); short names such as `b64.conv1` work."""
    module = net.get_submodule(resolve_name(net, layer))
    return {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}


def pick_tensor(tensors: dict[str, torch.Tensor], layer: str, param: str | None) -> str | None:
    """The tensor to show: `param` if the layer has it, else its `weight`; None when it has no weight and no
    `param` was named. A missing `param` is a one-line error listing the layer's tensors."""
    if param is None:
        return 'weight' if 'weight' in tensors else None
    if param not in tensors:
        listed = ', '.join(tensors) or 'none (its sub-modules hold them)'
        raise StylelensError(f'layer {layer!r} has no tensor {param!r} (its tensors: {listed})')
    return param


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The tensor's values as a CPU numpy array in the same dtype (bfloat16, which numpy lacks, as float32)."""
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def tensor_stats(t: torch.Tensor) -> dict[str, Any]:
    """Shape, dtype, count, mean, std (population), min, max, L2 norm, and the fraction of values near zero
    (|x| < 1e-3 * max|x|), computed in float64."""
    x = t.detach().cpu().double().reshape(-1)
    stats: dict[str, Any] = dict(shape=list(t.shape), dtype=str(t.dtype).replace('torch.', ''), numel=x.numel())
    if x.numel() == 0:
        return stats
    peak = x.abs().max().item()
    stats.update(mean=x.mean().item(), std=x.std(unbiased=False).item(), min=x.min().item(), max=x.max().item(),
                 l2_norm=x.norm().item(), near_zero_threshold=NEAR_ZERO * peak,
                 near_zero_fraction=(x.abs() < NEAR_ZERO * peak).double().mean().item())
    return stats


def shape_line(shape: tuple[int, ...]) -> str:
    """`Feature map size is (32, 32, 3, 3)` for conv weights; `Matrix`, `Vector`, `Scalar`, `Tensor` otherwise."""
    return f'{SHAPE_WORDS.get(len(shape), "Tensor")} size is {tuple(shape)}'


def format_stats(stats: dict[str, Any]) -> str:
    """The statistics as two or three readable lines."""
    lines = [f"dtype {stats['dtype']}, {stats['numel']:,} value{'s' if stats['numel'] != 1 else ''}"]
    if stats['numel']:
        lines.append(f"mean {stats['mean']:.6g}  std {stats['std']:.6g}  min {stats['min']:.6g}  "
                     f"max {stats['max']:.6g}  L2 norm {stats['l2_norm']:.6g}")
        lines.append(f"near zero (|x| < 1e-3 * max|x| = {stats['near_zero_threshold']:.3g}): "
                     f"{100 * stats['near_zero_fraction']:.2f}%")
    return '\n'.join(lines)


def format_array(t: torch.Tensor, full: bool = False, threshold: int = 1000, edgeitems: int = 2) -> str:
    """numpy's printout of the values: summarized with `...` beyond `threshold` values, or every value."""
    values = to_numpy(t)
    if full:
        with np.printoptions(threshold=sys.maxsize):
            return np.array2string(values, precision=6, max_line_width=120)
    return np.array2string(values, threshold=threshold, edgeitems=edgeitems, precision=6, max_line_width=120)


def describe(name: str, t: torch.Tensor, *, full: bool = False) -> str:
    """Name, shape line, statistics and the values (summarized, or all of them with `full`)."""
    return '\n'.join([name, shape_line(tuple(t.shape)), format_stats(tensor_stats(t)), format_array(t, full)])


def save_tensor(t: torch.Tensor, path: str | os.PathLike, key: str = 'weight') -> Path:
    """One tensor to `.npy`, or to `.npz` under `key`, with its values bit-identical, atomically."""
    path = Path(path)
    if path.suffix not in ('.npy', '.npz'):
        raise StylelensError(f'cannot write {path.name!r}: --out takes a .npy or .npz file')
    if path.suffix == '.npz':
        return save_npz(path, **{key: to_numpy(t)})
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        np.save(f, to_numpy(t))
    return path


def index_path(path: str | os.PathLike) -> Path:
    """Where `dump_all` writes its index: `all.npz` -> `all.index.json`."""
    path = Path(path)
    return path.with_name(f'{path.stem}.index.json')


def dump_all(net: torch.nn.Module, path: str | os.PathLike) -> tuple[Path, Path]:
    """Every tensor of `net.state_dict()` into one .npz (keys = dotted names, values bit-identical), plus an index
    JSON beside it (`<stem>.index.json`: name, shape, dtype, parameter or buffer). Returns both paths."""
    state = net.state_dict()
    parameters = {name for name, _ in net.named_parameters()}
    arrays = {name: to_numpy(t) for name, t in state.items()}
    save_npz(path, **arrays)
    index = dict(file=Path(path).name, count=len(arrays),
                 tensors=[dict(name=name, shape=list(a.shape), dtype=str(state[name].dtype).replace('torch.', ''),
                               kind='parameter' if name in parameters else 'buffer')
                          for name, a in arrays.items()])
    return Path(path), atomic_write_text(index_path(path), json.dumps(index, indent=1) + '\n')


def _list_tensors(layer: str, tensors: dict) -> str:
    """The layer's tensors, one line each, for layers without a `weight`."""
    lines = [f'{layer} has no `weight`; its tensors (choose one with --param NAME):']
    lines += [f'  {name:<16} {shape_line(tuple(t.shape))}, {str(t.dtype).replace("torch.", "")}'
              for name, t in tensors.items()]
    return '\n'.join(lines) if tensors else f'{layer} holds no tensors of its own (its sub-modules do)'


def layer_report(net: torch.nn.Module, layer: str, param: str | None, needs_tensor: bool,
                 full: bool = False) -> tuple[str, str | None]:
    """The text `weights --layer` prints and the dotted name of the tensor it shows: `param` (default `weight`) of
    the layer, or, where the layer has no `weight` and none is asked for, the list of its tensors (an error when
    `needs_tensor`, i.e. something is to be saved or plotted); `full` prints every value."""
    full_name = resolve_name(net, layer)
    tensors = layer_tensors(net, full_name)
    chosen = pick_tensor(tensors, full_name, param)
    if chosen is None:
        if needs_tensor:
            raise StylelensError(f"layer {full_name!r} has no `weight`: choose one of its tensors with --param "
                                 f"({', '.join(tensors) or 'it has none'})")
        return _list_tensors(full_name, tensors), None
    return describe(f'{full_name}.{chosen}', tensors[chosen], full=full), f'{full_name}.{chosen}'


def save_layer(net: torch.nn.Module, tensor_name: str, out: Path | None, png: Path | None,
               title_prefix: str) -> list[Path]:
    """Save the dotted tensor to `out` (.npy, or .npz keyed by its short name) and plot it to `png` (kernel grid or
    heatmap/bars, with a histogram); returns the files written."""
    layer, _, key = tensor_name.rpartition('.')
    tensor = layer_tensors(net, layer)[key]
    written = [save_tensor(tensor, out, key=key)] if out else []
    if png:
        written.append(kernel_grid_figure(tensor, png, f'{title_prefix}{tensor_name}'))
    return written
