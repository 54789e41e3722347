"""Latent sources given on the command line — seeds (`85,100-102`) and W files (`w:proj.npz`, one row of it with
`w:proj.npz@2`) — as labelled ws."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws
from stylelens.latents import load_ws_file, parse_int_list


@dataclass
class Source:
    """One latent: a label used in file names (`85`, `proj.0`) and its ws [num_ws, w_dim]."""

    label: str
    ws: torch.Tensor


def parse_source_items(spec: str) -> list[str]:
    """Split `85,100-102,w:proj.npz` into items; a `w:` item runs to the next comma."""
    items = [item.strip() for item in spec.split(',')]
    if not spec.strip() or any(not item for item in items):
        raise StylelensError(f'bad source list {spec!r}: expected seeds and W files like 85,100-102,w:proj.npz')
    return items


def _w_file_items(G: torch.nn.Module, spec: str, device: torch.device) -> list[tuple[str, torch.Tensor]]:
    """Every row of a W file as (`stem.i`, ws), or only row K for `file@K`."""
    path_text, at, row = spec.rpartition('@') if '@' in spec else (spec, '', '')
    path = Path(path_text)
    ws = torch.from_numpy(load_ws_file(path, w_dim=G.w_dim, num_ws=G.num_ws)).to(device)
    items = [(f'{path.stem}.{i}', w) for i, w in enumerate(ws)]
    if not at:
        return items
    if not row.isdigit() or int(row) >= len(items):
        raise StylelensError(f"bad row {row!r} in 'w:{spec}': {path.name} holds rows 0-{len(items) - 1}")
    return [items[int(row)]]


def resolve_sources(G: torch.nn.Module, spec: str, *, truncation_psi: float = 1,
                    truncation_cutoff: int | None = None, class_idx: int | str | None = None,
                    class_names: Sequence[str] | None = None) -> list[Source]:
    """Labelled ws for every item: seeds are mapped (with truncation) in one pass, W files are used as stored."""
    device = next(G.parameters()).device
    plan: list[tuple[str, object]] = []
    for item in parse_source_items(spec):
        if item.startswith('w:'):
            plan += _w_file_items(G, item[2:], device)
        else:
            plan += [(str(seed), seed) for seed in parse_int_list(item, what='seeds')]
    seeds = [value for _, value in plan if isinstance(value, int)]
    mapped = iter(seeds_to_ws(G, seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                              class_idx=class_idx, class_names=class_names, device=device)) if seeds else iter(())
    return [Source(label, next(mapped) if isinstance(value, int) else value) for label, value in plan]
