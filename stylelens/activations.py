"""What every block produces, per seed (G) or per image (D), streamed to .npz files and figures as it is made.

Each block's arrays are written from the probe's `on_record` callback the moment the block returns and then freed,
and G runs one seed at a time; the figures are drawn after the forward pass from the written files, one block at a
time, with channel tiles pooled to at most `OVERVIEW_MAX_PX`. So memory stays at one forward pass plus one block's
copy (measured by `stylelens.bench.probes` at 1024²); only a small RGB image and strongest channel per block are
kept, for the overview figure.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from stylelens import distributed
from stylelens.choices import NOISE_MODES, check_choice
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws, synthesize
from stylelens.latents import class_to_c
from stylelens.outputs import ensure_outdir, save_npz, save_png, to_uint8, write_manifest
from stylelens.probes import Recorded, probe, resolve_name
from stylelens.summary import is_alias_free, resolve_part, synthesis_parts
from stylelens.viz import OverviewColumn, as_numpy, feature_grid_figure, overview_figure, strongest_channels

OVERVIEW_MAX_PX = 256
DTYPES = {'float32': torch.float32, 'float16': torch.float16}
_PIL_MODES = {1: 'L', 3: 'RGB', 4: 'RGBA'}


def is_generator(net: torch.nn.Module) -> bool:
    """True for a generator (it has `synthesis`), False for a discriminator."""
    return hasattr(net, 'synthesis')


def block_names(net: torch.nn.Module) -> list[str]:
    """G: `b4, b8, ...` in synthesis order (StyleGAN3: `input, L0_36_512, ...`). D: `b64, ..., b8` and the
    epilogue `b4`, in forward order."""
    if is_generator(net):
        return synthesis_parts(net)
    return [f'b{res}' for res in net.block_resolutions] + ['b4']


def resolve_blocks(net: torch.nn.Module, blocks: Sequence[str] | str | None) -> list[str]:
    """Block names to capture: None or 'all' mean every block; an unknown block is an error listing those that
    exist. `synthesis.b32` is accepted for `b32`, and `L3` for the StyleGAN3 layer `L3_36_512`."""
    existing = block_names(net)
    if blocks is None or blocks == 'all' or list(blocks) == ['all']:
        return existing
    requested = [b.strip().removeprefix('synthesis.') for b in ([blocks] if isinstance(blocks, str) else blocks)]
    names = [resolve_part(existing, b) or b for b in requested]
    unknown = [b for b in names if b not in existing]
    if unknown:
        raise StylelensError(f"no block {', '.join(map(repr, unknown))} in this {type(net).__name__} "
                             f"(blocks: {', '.join(existing)}, or all)")
    return list(dict.fromkeys(names))


def _hook_prefix(net: torch.nn.Module) -> str:
    """Where blocks live in the module tree: `synthesis.` for G, the root for D."""
    return 'synthesis.' if is_generator(net) else ''


def _shrink(array: np.ndarray, max_px: int = OVERVIEW_MAX_PX) -> np.ndarray:
    """Average-pool a square [H, W] or [H, W, C] array down to at most `max_px` pixels per side."""
    factor = array.shape[0] // max_px
    if factor <= 1:
        return array
    h, w = array.shape[0] // factor, array.shape[1] // factor
    pooled = array[:h * factor, :w * factor].reshape(h, factor, w, factor, *array.shape[2:]).mean(axis=(1, 3))
    return np.rint(pooled).astype(array.dtype) if array.dtype == np.uint8 else pooled.astype(array.dtype)


def record_parts(name: str, value: Recorded, blocks: set[str], block_part: str,
                 images: dict[str, float]) -> dict[str, torch.Tensor]:
    """One hook point's record as named tensors, as every dump stores it: a block's parts (`x`, `img`; a block that
    returns one tensor as `block_part`, plus `img` when it is an image layer of `images`), other points as `out`."""
    is_block = name in blocks
    parts = value if isinstance(value, dict) else {block_part if is_block else 'out': value}
    if is_block and name in images and not isinstance(value, dict):
        parts['img'] = value * images[name]
    return {k: v for k, v in parts.items() if v is not None}


class RecordWriter:
    """The probe callback: writes each record of a batch to per-sample folders as soon as it arrives.

    Blocks get `<block>.npz` (`x`, `img` when present; D's epilogue `b4` gets `logits`), other hook points
    `<name>.npz` with `out` (or their named parts). Blocks that return one tensor store it as `block_part`
    (StyleGAN3 layers: `x`); `images` names the hook points whose output, times a scale, is the image (the
    StyleGAN3 ToRGB layer and its `output_scale`), stored as `img`. With `pngs`, blocks also get
    `<block>_channels.png` and, when `full_resolution` is set (G), `<block>_rgb.png`, `<block>_rgb_full.png` and a
    column of the overview.
    """

    def __init__(self, outdir: Path, folders: list[Path], labels: list[str], prefix: str, blocks: set[str],
                 dtype: torch.dtype, pngs: bool, top_k: int, full_resolution: int | None = None,
                 block_part: str = 'logits', images: dict[str, float] | None = None):
        self.outdir, self.folders, self.labels, self.prefix = outdir, folders, labels, prefix
        self.blocks, self.dtype, self.pngs, self.top_k = blocks, dtype, pngs, top_k
        self.full_resolution, self.block_part, self.images = full_resolution, block_part, images or {}
        self.files: list[str] = []
        self.columns: list[list[OverviewColumn]] = [[] for _ in folders]
        self.pending: list[tuple[int, str, Path]] = []  # block dumps whose figures are drawn after the forward pass

    def __call__(self, name: str, value: Recorded) -> None:
        is_block = name in self.blocks
        parts = record_parts(name, value, self.blocks, self.block_part, self.images)
        stem = name.removeprefix(self.prefix)
        for i, folder in enumerate(self.folders):
            arrays = {k: v[i:i + 1].to(self.dtype if v.is_floating_point() else v.dtype).numpy()
                      for k, v in parts.items()}
            path = save_npz(folder / f'{stem}.npz', **arrays)
            self._add(path)
            if is_block and self.pngs and parts.get('x') is not None and parts['x'].ndim == 4:
                self.pending.append((i, stem, path))

    def draw_figures(self) -> None:
        """The figures of every block written so far, drawn from the written .npz files once the forward pass is
        over, one block at a time: the pass's activations are freed by then, so the figures add nothing to its
        peak memory."""
        for i, stem, path in self.pending:
            with np.load(path) as data:
                fmap, img = as_numpy(data['x'][0]), (data['img'] if 'img' in data.files else None)
            self._block_pngs(i, stem, fmap, img)
            del fmap, img
        self.pending.clear()

    def _add(self, path: Path) -> None:
        self.files.append(path.relative_to(self.outdir).as_posix())

    def _block_pngs(self, i: int, stem: str, fmap: np.ndarray, img: np.ndarray | None) -> None:
        """The strongest-channels grid (tiles at most OVERVIEW_MAX_PX wide); for G also the block's RGB output
        (`img`: this sample's [1, C, R, R]) and its overview column."""
        folder = self.folders[i]
        self._add(feature_grid_figure(fmap, folder / f'{stem}_channels.png',
                                      f'{self.labels[i]} · {stem} x {list(fmap.shape)}', self.top_k,
                                      max_px=OVERVIEW_MAX_PX))
        if self.full_resolution is None:
            return
        rgb = None if img is None else to_uint8(img)[0]
        if rgb is not None:
            factor = self.full_resolution // rgb.shape[0]
            self._add(save_png(rgb, folder / f'{stem}_rgb.png'))
            self._add(save_png(rgb.repeat(factor, axis=0).repeat(factor, axis=1), folder / f'{stem}_rgb_full.png'))
        top = int(strongest_channels(fmap, 1)[0])
        self.columns[i].append(OverviewColumn(stem, None if rgb is None else _shrink(rgb), _shrink(fmap[top]), top))

    def write_overviews(self) -> None:
        """The pending block figures, then `overview.png` in every folder that has overview columns."""
        self.draw_figures()
        for folder, columns in zip(self.folders, self.columns):
            if columns:
                self._add(overview_figure(columns, folder / 'overview.png'))


def plan_hooks(net: torch.nn.Module, blocks: Sequence[str] | str | None, layers: Sequence[str] | None,
               class_idx: int | str | None = None,
               class_names: Sequence[str] | None = None) -> tuple[list[str], list[str], set[str]]:
    """Check a request before any work: (block names, every hook point to record, the hook points that are
    blocks). Unknown blocks, layers or classes are one-line errors."""
    class_to_c(class_idx, net.c_dim, 1, class_names)
    chosen = resolve_blocks(net, blocks)
    block_hooks = [_hook_prefix(net) + b for b in chosen]
    layer_hooks = [resolve_name(net, layer) for layer in layers or []]
    return chosen, list(dict.fromkeys(block_hooks + layer_hooks)), set(block_hooks)


def image_layers(G: torch.nn.Module) -> dict[str, float]:
    """StyleGAN3: the ToRGB layer's hook point and the output scale that turns its output into the image."""
    if not is_alias_free(G):
        return {}
    return {f'synthesis.{G.synthesis.layer_names[-1]}': float(G.synthesis.output_scale)}


def dump_activations(G: torch.nn.Module, seeds: Sequence[int], outdir: str | os.PathLike,
                     blocks: Sequence[str] | str | None = None, layers: Sequence[str] | None = None, *,
                     truncation_psi: float = 1, truncation_cutoff: int | None = None,
                     class_idx: int | str | None = None, class_names: Sequence[str] | None = None,
                     noise_mode: str = 'const', dtype: torch.dtype = torch.float32, pngs: bool = True,
                     top_k: int = 16, network: dict | None = None,
                     progress: Callable[[int], None] | None = None) -> list[str]:
    """Per seed, `outdir/seed0000/` with one .npz per block (`x`, `img`) and per extra layer (`out`), the block PNGs
    and `overview.png`; then `outdir/manifest.json`. Seeds run one at a time at batch 1 (official z convention;
    with noise 'random', torch is seeded with the seed), so under torchrun each rank dumps its share of the seeds
    and rank 0 writes the manifest. Returns the files written, relative to `outdir`."""
    check_choice(noise_mode, NOISE_MODES, 'noise mode')
    chosen, names, block_hooks = plan_hooks(G, blocks, layers, class_idx, class_names)
    out = ensure_outdir(outdir)
    per_seed: list[list[str]] = []
    for seed in distributed.shard(seeds):
        folder = ensure_outdir(out / f'seed{seed:04d}')
        writer = RecordWriter(out, [folder], [f'seed {seed}'], 'synthesis.', block_hooks, dtype, pngs, top_k,
                              full_resolution=G.img_resolution, block_part='x', images=image_layers(G))
        with probe(G, names, on_record=writer):
            ws = seeds_to_ws(G, [seed], truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                             class_idx=class_idx, class_names=class_names, device=next(G.parameters()).device)
            if noise_mode == 'random':
                torch.manual_seed(seed)
            synthesize(G, ws, noise_mode=noise_mode)
        writer.write_overviews()
        per_seed.append(writer.files)
        if progress is not None:
            progress(1)
    files = [name for names in distributed.gather_shards(per_seed) for name in names]
    if not distributed.is_main():
        return files
    options = dict(part='G', seeds=list(seeds), blocks=chosen, layers=[n for n in names if n not in block_hooks],
                   truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx,
                   noise_mode=noise_mode, dtype=str(dtype).replace('torch.', ''), pngs=pngs, top_k=top_k,
                   device=str(next(G.parameters()).device))
    write_manifest(out, command='activations', options=options, network=network, extra=dict(files=files))
    return files


def check_batch_for_mbstd(D: torch.nn.Module, batch: int) -> None:
    """Minibatch-std splits the batch into groups of min(group_size, N); N must divide evenly."""
    mbstd = getattr(D.b4, 'mbstd', None)
    group = None if mbstd is None or mbstd.group_size is None else min(mbstd.group_size, batch)
    if group and batch % group:
        raise StylelensError(f"D's minibatch-std layer compares images in groups of {mbstd.group_size}: pass fewer "
                             f"than {mbstd.group_size} images or a multiple of {mbstd.group_size} (got {batch})")


def load_images(paths: Sequence[str | os.PathLike], resolution: int, channels: int = 3) -> torch.Tensor:
    """Image files as a float batch [N, C, R, R] in [-1, 1] (`x / 127.5 - 1`, as training feeds D), each resized
    to R x R with Lanczos when its size differs (non-square images are stretched)."""
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert(_PIL_MODES[channels])
                if image.size != (resolution, resolution):
                    image = image.resize((resolution, resolution), Image.LANCZOS)
                arrays.append(np.asarray(image, dtype=np.float32).reshape(resolution, resolution, channels))
        except (OSError, ValueError) as err:
            raise StylelensError(f'cannot read image {str(path)!r}: {str(err).splitlines()[0] if str(err) else err}'
                                 f'; pass PNG/JPEG files') from None
    return torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2) / 127.5 - 1)


def _check_images(D: torch.nn.Module, images: torch.Tensor) -> None:
    """A float batch [N, C, R, R] with D's channels and resolution."""
    expected = [D.img_channels, D.img_resolution, D.img_resolution]
    if images.ndim != 4 or list(images.shape[1:]) != expected or not images.is_floating_point() or not len(images):
        raise StylelensError(f'images have shape {list(images.shape)} ({images.dtype}): this D takes a float batch '
                             f'[N, {", ".join(map(str, expected))}] in [-1, 1]')


def dump_discriminator_activations(D: torch.nn.Module, images: torch.Tensor, outdir: str | os.PathLike,
                                   blocks: Sequence[str] | str | None = None, layers: Sequence[str] | None = None,
                                   *, class_idx: int | str | None = None, class_names: Sequence[str] | None = None,
                                   dtype: torch.dtype = torch.float32, pngs: bool = True, top_k: int = 16,
                                   sources: Sequence[str] | None = None, network: dict | None = None) -> list[str]:
    """Run `images` [N, C, R, R] in [-1, 1] through D as one batch (minibatch-std compares the images with each
    other, so each image's activations depend on the others) and write `outdir/image{i}/` per image: one .npz per
    D block (`x`, `img` for skip D; the epilogue `b4` as `logits`) and per extra layer, and `<block>_channels.png`.
    Then `outdir/manifest.json` (with `sources`, e.g. the file names). Returns the files written."""
    _check_images(D, images)
    check_batch_for_mbstd(D, len(images))
    device = next(D.parameters()).device
    chosen, names, block_hooks = plan_hooks(D, blocks, layers, class_idx, class_names)
    c = torch.from_numpy(class_to_c(class_idx, D.c_dim, len(images), class_names)).to(device)
    out = ensure_outdir(outdir)
    folders = [ensure_outdir(out / f'image{i}') for i in range(len(images))]
    labels = [f'image{i}' + (f' ({Path(sources[i]).name})' if sources else '') for i in range(len(images))]
    writer = RecordWriter(out, folders, labels, '', block_hooks, dtype, pngs, top_k)
    with probe(D, names, on_record=writer), torch.no_grad():
        D(images.to(device, torch.float32), c)
    options = dict(part='D', images=[str(s) for s in sources] if sources else len(images), blocks=chosen,
                   layers=[n for n in names if n not in block_hooks], class_idx=class_idx,
                   dtype=str(dtype).replace('torch.', ''), pngs=pngs, top_k=top_k, device=str(device))
    writer.write_overviews()
    write_manifest(out, command='activations', options=options, network=network, extra=dict(files=writer.files))
    return writer.files
