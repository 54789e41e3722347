"""One network file into another format: a rosinality checkpoint, a stylelens safetensors file or an official
snapshot pickle. Every conversion is checked whole before anything is written, reports what it mapped, and refuses
in one line what the target cannot hold; the output is written atomically.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from stylelens.errors import StylelensError
from stylelens.loading.network import NETWORK_KEYS, load_network, resolve
from stylelens.loading.official_writer import DEFAULT_MODULE_SRC, dump_snapshot
from stylelens.loading.registry import ResolvedSource
from stylelens.loading.rosinality_writer import LossyConversionError, describe, rosinality_checkpoint
from stylelens.loading.safetensors_file import safetensors_payload, write_safetensors
from stylelens.outputs import atomic_path, ensure_outdir
from stylelens.vendor.stylegan2_ada import networks

TARGETS = ('rosinality', 'safetensors', 'official')
# Where NVIDIA's StyleGAN2 classes live in a checkout: stylegan2-ada-pytorch, then the stylegan3 repository.
OFFICIAL_SOURCE_FILES = ('training/networks.py', 'training/networks_stylegan2.py')
SUFFIXES = {'rosinality': ('.pt', '.pth'), 'safetensors': ('.safetensors',), 'official': ('.pkl',)}


@dataclass
class Conversion:
    """A checked conversion, ready to write: what it did (report lines), manifest details, and the writer."""

    lines: list[str]
    details: dict[str, Any]
    write: Callable[[Path], Any] = field(repr=False)


def official_module_source(directory: str | os.PathLike) -> tuple[str, Path]:
    """The source text of NVIDIA's StyleGAN2 networks module in the user's own checkout (as NVIDIA's persistence
    embeds it), and its path."""
    root = Path(directory).expanduser()
    for relative in OFFICIAL_SOURCE_FILES:
        file = root / relative
        if file.is_file():
            text = file.read_text(encoding='utf-8-sig')  # as inspect.getsource reads it: no BOM, '\n' newlines
            if 'class Generator' not in text or 'class SynthesisLayer' not in text:
                raise StylelensError(f"{file} does not define NVIDIA's Generator and SynthesisLayer: "
                                     f'--official-source is a checkout of stylegan2-ada-pytorch or stylegan3')
            return text, file
    raise StylelensError(f"{root} has no {' or '.join(OFFICIAL_SOURCE_FILES)}: --official-source is your checkout "
                         f'of stylegan2-ada-pytorch or stylegan3')


def _official(nets: dict[str, Any], module_src: tuple[str, Path] | None) -> Conversion:
    """An official snapshot {G, D, G_ema, augment_pipe, training_set_kwargs} of the networks the source has."""
    present = {k: nets[k] for k in NETWORK_KEYS if nets.get(k) is not None}
    for key, net in present.items():
        if not isinstance(net, (networks.Generator, networks.Discriminator)):
            raise LossyConversionError(f'cannot write {key} as an official StyleGAN2-ADA pickle: it is {describe(net)}')
    snapshot = {**present, 'augment_pipe': None, 'training_set_kwargs': nets.get('training_set_kwargs')}
    lines = [f'{key}: {type(net).__name__} as a persistent record (init kwargs, {len(net.state_dict())} tensors as '
             f'they are)' for key, net in present.items()]
    missing = [k for k in NETWORK_KEYS if k not in present]
    if missing:
        lines.append(f"note: the source has no {', '.join(missing)}; NVIDIA's legacy.load_network_pkl expects G, D "
                     f'and G_ema (stylelens reads the file as it is)')
    if nets.get('augment_pipe') is not None:
        lines.append('augment_pipe: not written (stylelens keeps it only as an inert record)')
    source_text, details = DEFAULT_MODULE_SRC, {'module_src': 'stub'}
    if module_src is None:
        lines.append("module source: a stub that raises if run (pass --official-source DIR to embed NVIDIA's "
                     'networks module from your checkout)')
    else:
        source_text, file = module_src
        digest = hashlib.sha256(source_text.encode('utf-8')).hexdigest()
        lines.append(f'module source: {file} (sha256 {digest[:16]}), from your checkout')
        details = {'module_src': str(file), 'module_src_sha256': digest}
    return Conversion(lines, details, lambda out: dump_snapshot(snapshot, out, module_src=source_text))


def _rosinality(nets: dict[str, Any]) -> Conversion:
    """convert_weight.py's layout: g_ema, latent_avg, and g, d where the source has them."""
    checkpoint, lines, maps = rosinality_checkpoint(nets)

    def write(out: Path) -> None:
        with atomic_path(out) as tmp:
            torch.save(checkpoint, tmp)

    return Conversion(lines, {'keys': list(checkpoint), 'name_map': maps}, write)


def _safetensors(nets: dict[str, Any]) -> Conversion:
    """Weights plus build options; reads back bit for bit."""
    tensors, metadata, lines = safetensors_payload(nets)
    return Conversion(lines, {'metadata': metadata},
                      lambda out: write_safetensors(out, tensors, metadata))


def read_target(to: str, out: Path, official_source: str | os.PathLike | None = None) -> tuple[str, Path] | None:
    """Check the target options before anything is loaded; the official module source when one is given."""
    if to not in TARGETS:
        raise StylelensError(f"unknown target format {to!r} (choose from: {', '.join(TARGETS)})")
    if out.suffix not in SUFFIXES[to] or out.is_dir():
        raise StylelensError(f"--out {out}: a {to} file ends in {' or '.join(SUFFIXES[to])}")
    if official_source is not None and to != 'official':
        raise StylelensError('--official-source is only for --to official')
    return official_module_source(official_source) if official_source is not None else None


def prepare_conversion(nets: dict[str, Any], to: str, module_src: tuple[str, Path] | None = None) -> Conversion:
    """Check that networks (as load_network returns them) convert to `to` without loss, and prepare the output;
    `module_src` (from `read_target`) is embedded in official pickles."""
    if to == 'official':
        return _official(nets, module_src)
    return _rosinality(nets) if to == 'rosinality' else _safetensors(nets)


def convert_network(source: str | os.PathLike | ResolvedSource, to: str, out: str | os.PathLike,
                    official_source: str | os.PathLike | None = None) -> tuple[Conversion, ResolvedSource]:
    """Load `source`, convert it to `to` and write `out` atomically (its folder made only after every check);
    returns the conversion (report lines, manifest details) and the resolved source."""
    out = Path(out).expanduser()
    module_src = read_target(to, out, official_source)
    resolved = resolve(source)
    if out.exists() and out.resolve() == Path(resolved.path).resolve():
        raise StylelensError(f'--out {out} is the input network itself: write the conversion to another file')
    conversion = prepare_conversion(load_network(resolved), to, module_src)
    ensure_outdir(out.parent)
    conversion.write(out)
    return conversion, resolved
