"""Options shared by several verbs, spelled as in NVIDIA's scripts (--network, --seeds, --trunc, --noise-mode...)."""
from __future__ import annotations

from typing import Callable

import click

from stylelens.choices import DEVICE_CHOICES, NOISE_MODES, PRECISION_CHOICES
from stylelens.errors import StylelensError
from stylelens.latents import parse_int_list


def network_option(f: Callable) -> Callable:
    return click.option('--network', 'network', default='demo', metavar='NAME|PATH|URL',
                        help='Registry name (see `stylelens networks`), pickle path, http(s) URL, or a '
                             '`stylelens train` run folder.')(f)


def device_option(f: Callable) -> Callable:
    return click.option('--device', type=click.Choice(DEVICE_CHOICES), default='auto',
                        help='Where to run; auto = cuda, then mps, then cpu.')(f)


def precision_option(f: Callable) -> Callable:
    return click.option('--precision', type=click.Choice(PRECISION_CHOICES), default='fp32',
                        help='fp32 reproduces official outputs; bf16 is faster, within a few uint8 levels.')(f)


def seeds_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """Parse `0-7,12` into a list of seeds, turning errors into click usage errors."""
    if value is None:
        return None
    try:
        return parse_int_list(value, what=param.name)
    except StylelensError as err:
        raise click.BadParameter(str(err)) from None


def truncation_options(f: Callable) -> Callable:
    f = click.option('--trunc-cutoff', 'truncation_cutoff', type=click.IntRange(min=0), default=None,
                     help='Truncate only the first K ws (coarse layers); default: all.')(f)
    return click.option('--trunc', 'truncation_psi', type=float, default=1.0,
                        help='Truncation psi: 1 = none, 0 = the average face.')(f)


def noise_mode_option(f: Callable) -> Callable:
    return click.option('--noise-mode', type=click.Choice(NOISE_MODES), default='const',
                        help='Per-pixel noise: stored constants, fresh random, or none.')(f)


def class_option(f: Callable) -> Callable:
    return click.option('--class', 'class_idx', default=None, metavar='INDEX|NAME',
                        help='Class for conditional networks (index, or name where the registry knows them).')(f)


def render_options(f: Callable) -> Callable:
    """The options every image-making verb shares: truncation, class, noise, batch size, device, precision."""
    for option in reversed((truncation_options, class_option, noise_mode_option, batch_option, device_option,
                            precision_option)):
        f = option(f)
    return f


def batch_option(f: Callable) -> Callable:
    return click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8,
                        help='Images per forward pass.')(f)
