"""Style mixing: which ws indices a block name means, donors mixed into a base, batched grids and their captions.

Block names map to ws indices by *ownership*: a block owns the ws of its convolutions, and the last block also
owns the final toRGB's. The toRGB of a non-last block reads the same index as the next block's first
convolution (b8.torgb and b16.conv0 both read ws[3] in a 64x64 StyleGAN2), so that index belongs to the next
block. Every index then belongs to exactly one block, and block sets never overlap by accident.
`block_reads(G)` gives the other view: every index a block reads, toRGB included.

A StyleGAN3 generator has no blocks: its Fourier input reads ws[0] and each layer `L{k}_{size}_{channels}` reads
ws[k + 1], so there the "blocks" are `input` and the layers (short names `L3`, ranges `L0-L4`), and the presets
group them by sampling rate.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from stylelens import distributed
from stylelens.devices import precision_context
from stylelens.errors import StylelensError
from stylelens.generation import synthesize
from stylelens.outputs import to_uint8
from stylelens.sources import Source, resolve_sources
from stylelens.summary import is_alias_free, resolve_part
from stylelens.viz import LabelledGrid

# Preset block groups by the network's output resolution: (coarse, middle, fine) as block resolutions.
# From 64x64 up they follow the StyleGAN paper (coarse 4-8, middle 16-32, fine 64 and up).
PRESET_NAMES = ('coarse', 'middle', 'fine')


def block_reads(G: torch.nn.Module) -> dict[str, list[int]]:
    """Every ws index each block reads (its convolutions and its toRGB); StyleGAN3: each layer's one index."""
    if is_alias_free(G):
        return block_owned(G)
    return {name: list(idx) for name, idx in G.synthesis.block_ws_ranges().items()}


def block_owned(G: torch.nn.Module) -> dict[str, list[int]]:
    """The ws indices each block owns: its convolutions', plus the final toRGB's for the last block; StyleGAN3:
    `input` owns ws[0] and layer k ws[k + 1]."""
    if is_alias_free(G):
        return {name: [index] for name, index in G.synthesis.layer_ws_indices().items()}
    owned = {}
    for name, idx in G.synthesis.block_ws_ranges().items():
        block = getattr(G.synthesis, name)
        count = block.num_conv + (block.num_torgb if block.is_last else 0)
        owned[name] = list(range(idx.start, idx.start + count))
    return owned


def _thirds(values: list) -> tuple[list, list, list]:
    """Split sorted distinct values into low, middle and high thirds (the middle may be empty)."""
    third = max(1, round(len(values) / 3))
    return values[:third], values[third:-third] or [], values[-third:] if len(values) > 1 else []


def sampling_rates(G: torch.nn.Module) -> dict[str, float]:
    """StyleGAN3: each part's output sampling rate (the Fourier input's own rate for `input`)."""
    rates = {'input': float(G.synthesis.input.sampling_rate)}
    rates.update((name, float(getattr(G.synthesis, name).out_sampling_rate)) for name in G.synthesis.layer_names)
    return rates


def preset_blocks(G: torch.nn.Module) -> dict[str, list[str]]:
    """Block names of the coarse, middle and fine presets for this network's resolution; for StyleGAN3 the
    layers of the lowest, middle and highest thirds of its sampling rates."""
    if is_alias_free(G):
        rates = sampling_rates(G)
        groups = _thirds(sorted(set(rates.values())))
        return {name: [part for part, rate in rates.items() if rate in group]
                for name, group in zip(PRESET_NAMES, groups)}
    resolutions = [int(name[1:]) for name in block_owned(G)]
    top = max(resolutions)
    if top >= 64:
        groups = ([r for r in resolutions if r <= 8], [r for r in resolutions if 16 <= r <= 32],
                  [r for r in resolutions if r >= 64])
    else:
        groups = _thirds(resolutions)
    return {name: [f'b{r}' for r in group] for name, group in zip(PRESET_NAMES, groups)}


def _block_range(G: torch.nn.Module, start: str, end: str, token: str) -> list[str]:
    names = list(block_owned(G))
    found = [resolve_part(names, name) for name in (start, end)]
    for name, full in zip((start, end), found):
        if full is None:
            what = 'layer' if is_alias_free(G) else 'block'
            raise StylelensError(f"no {what} {name!r} in {token!r} ({what}s: {', '.join(names)})")
    lo, hi = sorted((names.index(found[0]), names.index(found[1])))
    return names[lo:hi + 1]


def parse_layers(G: torch.nn.Module, spec: str) -> list[int]:
    """ws indices for a layer spec: indices and ranges (`0-6,9`), block names and ranges (`b4,b8`, `b128-b1024`;
    StyleGAN3: `input`, `L3` or `L3_36_512`, `L0-L4`), or presets (`coarse`, `middle`, `fine`), mixed freely;
    sorted, without repeats."""
    owned = block_owned(G)
    presets = preset_blocks(G)
    indices: set[int] = set()
    for token in (t.strip() for t in spec.split(',')):
        if not token:
            raise StylelensError(f'empty item in layer list {spec!r}')
        if token in presets:
            if not presets[token]:
                described = ', '.join(f"{k}={'+'.join(v) or '-'}" for k, v in presets.items())
                raise StylelensError(f'preset {token!r} is empty for a {G.img_resolution}x{G.img_resolution} network '
                                     f'(presets: {described})')
            indices.update(i for b in presets[token] for i in owned[b])
        elif re.fullmatch(r'b\d+(-b\d+)?|(input|L\d+(_\d+_\d+)?)(-(input|L\d+(_\d+_\d+)?))?', token):
            parts = token.split('-')
            blocks = _block_range(G, parts[0], parts[-1], token)
            indices.update(i for b in blocks for i in owned[b])
        elif re.fullmatch(r'\d+(-\d+)?', token):
            lo, hi = (int(p) for p in (token.split('-') * 2)[:2])
            if lo > hi:
                raise StylelensError(f'layer range {token!r} runs backwards')
            indices.update(range(lo, hi + 1))
        elif is_alias_free(G):
            raise StylelensError(f"unknown layer {token!r}: use ws indices (0-6), layers ({', '.join(owned)}; "
                                 f"short names like L3, ranges like L0-L4) or presets ({', '.join(PRESET_NAMES)})")
        else:
            raise StylelensError(f"unknown layer {token!r}: use ws indices (0-6), blocks "
                                 f"({', '.join(owned)}, or ranges like b8-b32) or presets ({', '.join(PRESET_NAMES)})")
    bad = sorted(i for i in indices if i >= G.num_ws)
    if bad:
        raise StylelensError(f'style index {bad[0]} does not exist: this network has num_ws={G.num_ws} '
                             f'(valid: 0-{G.num_ws - 1})')
    return sorted(indices)


@dataclass
class Donor:
    """A source of styles: its ws [num_ws, w_dim] and the ws indices it supplies."""

    label: str
    ws: torch.Tensor
    layers: list[int] = field(default_factory=list)


def mix_ws(base: torch.Tensor, donors: Sequence[Donor]) -> torch.Tensor:
    """`base` ws [num_ws, w_dim] (or [N, num_ws, w_dim]) with each donor's layers replaced by the donor's ws."""
    claimed: dict[int, str] = {}
    for donor in donors:
        overlap = sorted(i for i in donor.layers if i in claimed)
        if overlap:
            raise StylelensError(f"donors {claimed[overlap[0]]!r} and {donor.label!r} both supply ws "
                                 f"{','.join(map(str, overlap))}; each index can come from one donor only")
        claimed.update((i, donor.label) for i in donor.layers)
    mixed = base.clone()
    for donor in donors:
        mixed[..., donor.layers, :] = donor.ws[..., donor.layers, :].to(mixed)
    return mixed


@dataclass
class DonorMix:
    """A base latent mixed with donors: the base's label, the donors, and uint8 images [base, donors..., mix]."""

    base: str
    donors: list[Donor]
    images: np.ndarray


def mix_donors(G: torch.nn.Module, base: str, donor_specs: Sequence[str], *, truncation_psi: float = 1,
               truncation_cutoff: int | None = None, class_idx: int | str | None = None,
               class_names: Sequence[str] | None = None, noise_mode: str = 'const',
               precision: str = 'fp32') -> DonorMix:
    """One base (a seed or a W vector) with several donors, each `LAYERS=seed:N` or `LAYERS=w:FILE` supplying its
    own layers: the base, every donor and the mix rendered in one batch."""

    def resolve(spec: str) -> list[Source]:
        return resolve_sources(G, spec, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                               class_idx=class_idx, class_names=class_names)

    base_sources = resolve(base)
    if len(base_sources) != 1:
        raise StylelensError(f'--base must be one seed or one W vector (got {len(base_sources)})')
    donors = [_donor(G, spec, resolve) for spec in donor_specs]
    base_ws = base_sources[0].ws
    all_ws = torch.stack([base_ws] + [d.ws for d in donors] + [mix_ws(base_ws, donors)])
    images = to_uint8(synthesize(G, all_ws, noise_mode=noise_mode, precision=precision))
    return DonorMix(base_sources[0].label, donors, images)


def _donor(G: torch.nn.Module, spec: str, resolve: Callable[[str], list[Source]]) -> Donor:
    """A `LAYERS=SOURCE` spec as the donor of those layers; the source must name exactly one latent."""
    layers, sep, source = spec.partition('=')
    if not sep or not source.startswith(('seed:', 'w:')):
        raise StylelensError(f'bad --source {spec!r}: expected LAYERS=seed:N or LAYERS=w:FILE '
                             '(e.g. b4,b8=seed:12)')
    found = resolve(source[len('seed:'):] if source.startswith('seed:') else source)
    if len(found) != 1:
        raise StylelensError(f'--source {spec!r} names {len(found)} latents; give exactly one')
    return Donor(found[0].label, found[0].ws, parse_layers(G, layers))


@dataclass
class MixGrid:
    """A rendered grid: uint8 images of the row and column sources and of every cell [rows, cols, H, W, C]."""

    row_labels: list[str]
    col_labels: list[str]
    rows: torch.Tensor
    cols: torch.Tensor
    cells: torch.Tensor


def _batches(items: list, size: int) -> Iterator[list]:
    """`items` in the fewest batches of at most `size`, as equal as possible (9 at 8 -> 5 + 4, not 8 + 1)."""
    count = -(-len(items) // size)
    for k in range(count):
        yield items[k * len(items) // count:(k + 1) * len(items) // count]


def shared_prefix(G: torch.nn.Module, donated: Sequence[int]) -> tuple[str, int]:
    """Which source a mixed latent shares its leading blocks' features with ('col' or 'row'), and how many.

    A block's features depend only on the ws its convolutions own, so while every owned index comes from the
    donor (or none does), the mixed latent's feature maps equal the donor's (or the base's) exactly.
    """
    owned = list(block_owned(G).values())
    donated = set(donated)

    def leading(test) -> int:
        count = 0
        for indices in owned[:-1]:
            if not test(set(indices)):
                break
            count += 1
        return count

    from_col, from_row = leading(lambda idx: idx <= donated), leading(lambda idx: not idx & donated)
    return ('col', from_col) if from_col >= from_row else ('row', from_row)


def _run_blocks(G: torch.nn.Module, ws: torch.Tensor, *, noise_mode: str, precision: str, start: int = 0,
                x: torch.Tensor | None = None, img: torch.Tensor | None = None,
                keep: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Synthesis from block `start` on (given that block's input x and img); also returns the features of the
    first `keep` blocks, for latents that share them."""
    if is_alias_free(G):
        return _run_layers(G, ws, noise_mode=noise_mode, precision=precision, start=start, x=x, keep=keep)
    kept = []
    with torch.no_grad(), precision_context(precision, ws.device):
        for k, (name, idx) in enumerate(list(G.synthesis.block_ws_ranges().items())[start:], start):
            x, img = getattr(G.synthesis, name)(x, img, ws.narrow(1, idx.start, len(idx)), noise_mode=noise_mode)
            if k < keep:
                kept.append(x)
    return img.float(), kept


def _run_layers(G: torch.nn.Module, ws: torch.Tensor, *, noise_mode: str, precision: str, start: int = 0,
                x: torch.Tensor | None = None, keep: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`_run_blocks` for StyleGAN3: the Fourier input (part 0) and the layers (part k reads ws[k]) from part
    `start` on, given the previous part's output `x`; also returns the outputs of the first `keep` parts."""
    synthesis, kept = G.synthesis, []
    with torch.no_grad(), precision_context(precision, ws.device):
        ws = ws.to(torch.float32)
        for k, name in enumerate(['input', *synthesis.layer_names][start:], start):
            x = synthesis.input(ws[:, 0]) if k == 0 else getattr(synthesis, name)(x, ws[:, k], noise_mode=noise_mode)
            if k < keep:
                kept.append(x)
    return (x * synthesis.output_scale).float().contiguous(), kept


def _prefix_image(G: torch.nn.Module, features: list[torch.Tensor], ws: torch.Tensor,
                  precision: str) -> torch.Tensor | None:
    """The image path of the first blocks, from their (shared) features and this latent's own toRGB ws (StyleGAN3
    has no image path before its last layer: None)."""
    if is_alias_free(G):
        return None
    img = None
    with torch.no_grad(), precision_context(precision, ws.device):
        for x, (name, idx) in zip(features, G.synthesis.block_ws_ranges().items()):
            img = getattr(G.synthesis, name).rgb(x, img, ws.narrow(1, idx.start, len(idx)))
    return img


def render_grids(G: torch.nn.Module, row_ws: torch.Tensor, col_ws: torch.Tensor,
                 style_sets: Sequence[Sequence[int]], *, row_labels: Sequence[str], col_labels: Sequence[str],
                 noise_mode: str = 'const', batch_size: int = 8, precision: str = 'fp32',
                 progress: Callable[[int], None] | None = None) -> list[MixGrid]:
    """One rows x cols grid per style set (row ws with the set's indices taken from the column), as
    style_mixing.py defines a cell.

    Every distinct source is synthesized once for all grids, every cell once, `batch_size` images per forward
    pass; a cell whose row and column are the same source is that source's image. Under torchrun every rank
    renders the sources and its share of the cells' batches (the batches one process renders), and every rank
    gets all cells. A cell starts where its
    features stop matching a source's (e.g. after the coarse blocks when the column donates them), reusing that
    source's feature maps: the same arithmetic, less of it.
    """
    sources: dict[str, torch.Tensor] = {}
    for label, ws in list(zip(row_labels, row_ws)) + list(zip(col_labels, col_ws)):
        sources.setdefault(label, ws)
    prefixes = [shared_prefix(G, styles) for styles in style_sets]
    keep = max([n for _, n in prefixes] + [0])
    features: dict[str, list[torch.Tensor]] = {}
    images: dict[object, torch.Tensor] = {}

    def store(keys: list, rendered: torch.Tensor, count: bool = True) -> list:
        pairs = [(key, torch.from_numpy(img)) for key, img in zip(keys, to_uint8(rendered))]
        images.update(pairs)
        if progress is not None and count:
            progress(len(keys))
        return pairs

    for batch in _batches(list(sources.items()), batch_size):  # every rank: the cells start from their features
        img, kept = _run_blocks(G, torch.stack([w for _, w in batch]), noise_mode=noise_mode, precision=precision,
                                keep=keep)
        for i, (label, _) in enumerate(batch):
            features[label] = [x[i:i + 1] for x in kept]
        store([label for label, _ in batch], img, distributed.is_main())

    cell_batches = []
    for k, (styles, (side, start)) in enumerate(zip(style_sets, prefixes)):
        jobs = [((k, r, c), mix_ws(rw, [Donor(c, col_ws[j], list(styles))]), c if side == 'col' else r)
                for r, rw in zip(row_labels, row_ws) for j, c in enumerate(col_labels) if r != c]
        cell_batches += [(start, batch) for batch in _batches(jobs, batch_size)]
    rendered_here = []
    for start, batch in distributed.shard(cell_batches):  # under torchrun, this rank's share of the cell batches
        ws = torch.stack([w for _, w, _ in batch])
        shared = [torch.cat([features[src][b] for _, _, src in batch]) for b in range(start)]
        img = _prefix_image(G, shared, ws, precision)
        rendered, _ = _run_blocks(G, ws, noise_mode=noise_mode, precision=precision, start=start,
                                  x=shared[-1] if shared else None, img=img)
        rendered_here.append(store([key for key, _, _ in batch], rendered))
    for pairs in distributed.gather_shards(rendered_here):
        images.update(pairs)

    def cell(k: int, r: str, c: str) -> torch.Tensor:
        return images[r] if r == c else images[(k, r, c)]

    return [MixGrid(list(row_labels), list(col_labels), torch.stack([images[r] for r in row_labels]),
                    torch.stack([images[c] for c in col_labels]),
                    torch.stack([torch.stack([cell(k, r, c) for c in col_labels]) for r in row_labels]))
            for k in range(len(style_sets))]


def count_renders(row_labels: Sequence[str], col_labels: Sequence[str], num_sets: int = 1) -> int:
    """How many images `render_grids` synthesizes: distinct sources plus off-diagonal cells of every set."""
    distinct = len(dict.fromkeys(list(row_labels) + list(col_labels)))
    return distinct + num_sets * sum(r != c for r in row_labels for c in col_labels)


def grid_image(grid: MixGrid) -> torch.Tensor:
    """The official layout as one uint8 image: top-left empty, first row the columns, first column the rows."""
    n_rows, n_cols, h, w, ch = grid.cells.shape
    canvas = torch.zeros([(n_rows + 1) * h, (n_cols + 1) * w, ch], dtype=torch.uint8)
    for c in range(n_cols):
        canvas[:h, (c + 1) * w:(c + 2) * w] = grid.cols[c]
    for r in range(n_rows):
        canvas[(r + 1) * h:(r + 2) * h, :w] = grid.rows[r]
        for c in range(n_cols):
            canvas[(r + 1) * h:(r + 2) * h, (c + 1) * w:(c + 2) * w] = grid.cells[r, c]
    return canvas


def _runs(items: Sequence, label: Callable[[object], str], chosen: Callable[[object], bool]) -> list[str]:
    """Labels of the chosen items, consecutive ones as `first-last` ranges (StyleGAN3 captions stay short)."""
    runs: list[list] = []
    for k, item in enumerate(items):
        if chosen(item):
            if runs and runs[-1][-1] == k - 1:
                runs[-1].append(k)
            else:
                runs.append([k])
    return [label(items[r[0]]) if len(r) == 1 else f'{label(items[r[0]])}-{label(items[r[-1]])}' for r in runs]


def styles_caption(G: torch.nn.Module, spec: str, indices: Sequence[int]) -> str:
    """A grid's caption: the layer spec, its ws indices, and the blocks whose owned ws it covers in full
    (StyleGAN3: index and layer ranges, with short layer names)."""
    owned = block_owned(G)
    if is_alias_free(G):
        ws = _runs(range(G.num_ws), str, lambda i: i in indices)
        layers = _runs(list(owned), lambda name: name.split('_')[0], lambda name: set(owned[name]) <= set(indices))
        return f"{spec}: ws {','.join(ws)}" + (f" ({'+'.join(layers)})" if layers else '')
    blocks = [name for name, idx in owned.items() if idx and set(idx) <= set(indices)]
    return f"{spec}: ws {','.join(map(str, indices))}" + (f" ({'+'.join(blocks)})" if blocks else '')


def labelled_grid(grid: MixGrid, caption: str) -> LabelledGrid:
    """The grid in the official layout with its source labels and a caption, for `viz.labelled_grids_figure`."""
    return LabelledGrid(grid_image(grid).numpy(), grid.row_labels, grid.col_labels, caption)
