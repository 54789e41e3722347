"""Options shared by the causes verbs (patch, attribute, ablate, styles): the metric, the hook points, one latent
given as a seed or a W file, and noise that stays the same between runs."""
from __future__ import annotations

from typing import Callable

import click
import torch

from stylelens.causes.metrics import METRIC_HINT
from stylelens.causes.points import AT_HINT
from stylelens.cli.options import batch_option, class_option, device_option, truncation_options
from stylelens.errors import StylelensError
from stylelens.sources import resolve_sources


def metric_option(f: Callable) -> Callable:
    """--metric: what the verb measures."""
    return click.option('--metric', required=True, metavar='SPEC',
                        help=f'What to measure: {METRIC_HINT} (factor: the shipped shapes factor regressor).')(f)


def at_option(default: str | None = None) -> Callable:
    """--at: the hook points (required when there is no default)."""
    return click.option('--at', default=default, required=default is None, metavar='SET|NAMES',
                        help=f'Hook points: {AT_HINT}.')


def fixed_noise_option(f: Callable) -> Callable:
    """--noise-mode: const or none, so every run sees the same noise."""
    return click.option('--noise-mode', type=click.Choice(['const', 'none']), default='const',
                        help='Per-pixel noise, the same in every run.')(f)


def measure_options(f: Callable) -> Callable:
    """The options patch, attribute and ablate share, in this order: metric, truncation, class, noise, batch, device."""
    return metric_option(truncation_options(class_option(fixed_noise_option(batch_option(device_option(f))))))


def one_latent(G: torch.nn.Module, spec: str, option: str, *, truncation_psi: float = 1,
               truncation_cutoff: int | None = None, class_idx: str | None = None,
               class_names: list[str] | None = None) -> torch.Tensor:
    """ws [1, num_ws, w_dim] of a seed or a W file row (`w:FILE`, `w:FILE@K`); more than one is a one-line error."""
    try:
        sources = resolve_sources(G, spec, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                                  class_idx=class_idx, class_names=class_names)
    except StylelensError as err:
        raise StylelensError(f"bad {option} '{spec}': {err}") from None
    if len(sources) != 1:
        raise StylelensError(f"bad {option} '{spec}': it names {len(sources)} latents; pass one seed or one W file "
                             f'row (w:FILE@K)')
    return sources[0].ws.unsqueeze(0).float()
