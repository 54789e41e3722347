"""Latent walks on disk: ws rendered to frames in batches, written as a GIF, an MP4 or a PNG strip, and the
`interpolate` and `traverse` jobs the verbs of those names call.

The walks themselves (lerp/slerp paths, directions in W, traversal ws) are computed by `stylelens.traversal`.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from stylelens.errors import StylelensError
from stylelens.generation import synthesize
from stylelens.outputs import atomic_path, save_png, to_uint8
from stylelens.traversal import SPACES, Direction, default_slerp, interpolation_ws, traversal_ws
from stylelens.viz import comparison_figure, labelled_strip_figure

WALK_SUFFIXES = ('.gif', '.mp4', '.png')
MAX_STRIP_COLUMNS = 16

Progress = Callable[[int], Any]


# ------------------------------------------------------------------------------------------------ rendering

def render_frames(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str = 'const', batch_size: int = 8,
                  precision: str = 'fp32', progress: Progress | None = None, noise_seed: int = 0) -> np.ndarray:
    """Synthesise ws [F, num_ws, w_dim] `batch_size` at a time into uint8 frames [F, H, W, C].

    `progress(n)` is called after each batch with its size; random noise is seeded with `noise_seed`.
    """
    if batch_size < 1:
        raise StylelensError(f'--batch {batch_size} is too small: pass at least 1')
    ws = ws.to(device=next(G.parameters()).device, dtype=torch.float32)
    if noise_mode == 'random':
        torch.manual_seed(noise_seed)
    frames = []
    for start in range(0, ws.shape[0], batch_size):
        images = synthesize(G, ws[start:start + batch_size], noise_mode=noise_mode, precision=precision)
        frames.append(to_uint8(images))
        if progress is not None:
            progress(images.shape[0])
    return np.concatenate(frames)


@dataclass
class RenderOptions:
    """How ws become frames: noise mode, batch size, precision, a progress callback, the seed for random noise."""

    noise_mode: str = 'const'
    batch_size: int = 8
    precision: str = 'fp32'
    progress: Progress | None = None
    noise_seed: int = 0

    def render(self, G: torch.nn.Module, ws: torch.Tensor) -> np.ndarray:
        """render_frames with these options."""
        return render_frames(G, ws, self.noise_mode, self.batch_size, self.precision, self.progress, self.noise_seed)


def strip_columns(frames: int, max_columns: int = MAX_STRIP_COLUMNS) -> list[int]:
    """Up to `max_columns` frame indices spread evenly from the first frame to the last, both included."""
    count = min(frames, max_columns)
    return sorted({int(i) for i in np.linspace(0, frames - 1, count).round()})


# ------------------------------------------------------------------------------------------------ writing

def check_walk_path(path: str | os.PathLike) -> Path:
    """Fail early (before any work) on an output suffix we cannot write, or a missing MP4 plugin."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in WALK_SUFFIXES:
        raise StylelensError(f"bad --out '{target}': expected a {', '.join(WALK_SUFFIXES[:-1])} "
                             f'or {WALK_SUFFIXES[-1]} file')
    if suffix == '.mp4' and importlib.util.find_spec('imageio_ffmpeg') is None:
        raise StylelensError('writing .mp4 needs the imageio-ffmpeg plugin: pip install imageio-ffmpeg '
                             '(or write .gif or .png)')
    if target.is_dir():
        raise StylelensError(f"bad --out '{target}': it is a directory; pass a file name")
    return target


def save_animation(frames: np.ndarray, path: str | os.PathLike, fps: float = 30) -> Path:
    """Write uint8 frames [F, H, W, C] as a looping GIF or an H.264 MP4 (by suffix), atomically."""
    import imageio.v3 as iio

    target = check_walk_path(path)
    if fps <= 0:
        raise StylelensError(f'--fps {fps} must be positive')
    with atomic_path(target) as tmp:
        if target.suffix.lower() == '.gif':
            iio.imwrite(tmp, _gif_frames(frames), duration=1000 / fps, loop=0)
        else:
            iio.imwrite(tmp, _rgb(frames), plugin='FFMPEG', fps=fps)
    return target


def _gif_frames(frames: np.ndarray) -> np.ndarray:
    """Grayscale frames lose their channel axis, which GIF writers expect."""
    return frames[..., 0] if frames.shape[-1] == 1 else frames


def _rgb(frames: np.ndarray) -> np.ndarray:
    """RGB frames for video: grayscale repeated, alpha dropped."""
    if frames.shape[-1] == 1:
        return np.repeat(frames, 3, axis=-1)
    return frames[..., :3]


def save_strip(frames: np.ndarray, path: str | os.PathLike) -> Path:
    """Write frames [N, H, W, C] side by side as one PNG [H, N*W, C]."""
    return save_png(np.concatenate(list(frames), axis=1), path)


def write_walk(frames: np.ndarray, path: str | os.PathLike, fps: float = 30) -> Path:
    """A .gif/.mp4 animation or a .png strip, by suffix."""
    if Path(path).suffix.lower() == '.png':
        return save_strip(frames, path)
    return save_animation(frames, path, fps)


def walk_manifest_name(target: Path) -> str:
    """`walk.gif` -> `walk.manifest.json`, so several walks can share a directory."""
    return f'{target.stem}.manifest.json'


# ------------------------------------------------------------------------------------------------ whole jobs

def interpolate(G: torch.nn.Module, seeds: Sequence[int], out: str | os.PathLike, *, space: str = 'z',
                slerp: bool | None = None, frames: int = 60, loop: bool = False, fps: float = 30,
                truncation_psi: float = 1, truncation_cutoff: int | None = None,
                class_idx: int | str | None = None, class_names: Sequence[str] | None = None,
                compare: bool = False, render: RenderOptions | None = None) -> dict[str, Any]:
    """Write the walk through `seeds` to `out` (.gif, .mp4, or a .png strip of at most 16 evenly spaced frames)
    and, with `compare`, `<stem>_z_vs_w.png`; returns what was written, for the manifest."""
    target = check_walk_path(out)
    render = render or RenderOptions(noise_seed=seeds[0])
    latent = dict(frames=frames, loop=loop, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                  class_idx=class_idx, class_names=class_names)
    spherical = default_slerp(space) if slerp is None else slerp
    ws = interpolation_ws(G, seeds, space=space, slerp=spherical, **latent)
    shown = strip_columns(frames) if target.suffix.lower() == '.png' else list(range(frames))
    images = render.render(G, ws[shown])
    write_walk(images, target, fps)
    summary: dict[str, Any] = dict(files=[target.name], slerp=spherical, frames_written=len(shown))
    if len(shown) < frames:
        summary['strip'] = f'{len(shown)} of {frames} frames, evenly spaced: {shown}'
    if compare:
        columns = strip_columns(frames)
        known = {space: images[[shown.index(i) for i in columns]]}
        path = target.with_name(f'{target.stem}_z_vs_w.png')
        summary['compare'] = compare_spaces(G, seeds, path, slerp=slerp, render=render, known=known, **latent)
        summary['files'].append(path.name)
    return summary


def compare_spaces(G: torch.nn.Module, seeds: Sequence[int], path: str | os.PathLike, *, slerp: bool | None = None,
                   frames: int = 60, loop: bool = False, truncation_psi: float = 1,
                   truncation_cutoff: int | None = None, class_idx: int | str | None = None,
                   class_names: Sequence[str] | None = None, render: RenderOptions | None = None,
                   known: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """One figure: the Z walk above the W walk through the same seeds, at the same (at most 16) frames.

    `slerp=None` gives each space its default; `known` holds rows already rendered at those frames, by space.
    """
    render = render or RenderOptions(noise_seed=seeds[0])
    columns = strip_columns(frames)
    rows = {}
    for space in SPACES:
        spherical = default_slerp(space) if slerp is None else slerp
        if known is None or space not in known:
            ws = interpolation_ws(G, seeds, space=space, slerp=spherical, frames=frames, loop=loop,
                                  truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                                  class_idx=class_idx, class_names=class_names)
            known = {**(known or {}), space: render.render(G, ws[columns])}
        rows[f'{space.upper()} ({"slerp" if spherical else "lerp"})'] = known[space]
    route = ' → '.join(map(str, [*seeds, *seeds[:1]] if loop else seeds))
    comparison_figure(rows, [f'frame {i}' for i in columns], f'seeds {route}: {len(columns)} of {frames} frames',
                      path)
    return dict(file=Path(path).name, rows=list(rows), frames_shown=columns)


def traverse(G: torch.nn.Module, seed: int, direction: Direction, out: str | os.PathLike, *,
             values: Sequence[float], layers: Sequence[int] | None = None, layers_label: str | None = None,
             fps: float = 30, truncation_psi: float = 1, truncation_cutoff: int | None = None,
             class_idx: int | str | None = None, class_names: Sequence[str] | None = None,
             render: RenderOptions | None = None) -> dict[str, Any]:
    """Write the seed moved along `direction` to `out`: for .png a strip figure with the value under each frame
    and the direction and layers in the title, else a GIF/MP4; returns what was written, for the manifest."""
    target = check_walk_path(out)
    render = render or RenderOptions(noise_seed=seed)
    ws = traversal_ws(G, seed, direction, values, layers, truncation_psi=truncation_psi,
                      truncation_cutoff=truncation_cutoff, class_idx=class_idx, class_names=class_names)
    images = render.render(G, ws)
    if target.suffix.lower() == '.png':
        labels = [f'{value:+.2f}{direction.unit}' for value in values]
        labelled_strip_figure(images, labels, traversal_title(seed, direction, layers, layers_label), target)
    else:
        save_animation(images, target, fps)
    return dict(files=[target.name], values=list(values), scale=direction.scale, unit=direction.unit or 'raw',
                layers=list(layers) if layers is not None else 'all')


def traversal_title(seed: int, direction: Direction, layers: Sequence[int] | None = None,
                    layers_label: str | None = None) -> str:
    """e.g. `seed 5 · pca:0 (12.3% of W variance, σ = 0.41) · layers b4,b8 (ws 0-3)`."""
    details = []
    if direction.explained_variance_ratio is not None:
        details.append(f'{100 * direction.explained_variance_ratio:.1f}% of W variance')
    if direction.unit:
        details.append(f'σ = {direction.scale:.3g}')
    name = f"{direction.label} ({', '.join(details)})" if details else direction.label
    if layers is None:
        return f'seed {seed} · {name} · all layers'
    indices = _compact(layers)
    where = f'layers {layers_label} (ws {indices})' if layers_label and layers_label != indices else f'ws {indices}'
    return f'seed {seed} · {name} · {where}'


def _compact(indices: Sequence[int]) -> str:
    """Sorted indices as ranges: [0, 1, 2, 5] -> '0-2,5'."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ','.join(str(a) if a == b else f'{a}-{b}' for a, b in runs)
