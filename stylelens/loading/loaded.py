"""Open the network a command or the explorer names, and describe it for manifests (what `--network` means)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from stylelens import distributed
from stylelens.devices import pick_device, tune_cpu_allocator
from stylelens.errors import StylelensError
from stylelens.loading.network import load_generator, load_network, resolve
from stylelens.loading.registry import ResolvedSource


@dataclass
class LoadedNetwork:
    """A generator (and optionally its discriminator) with where it came from."""

    source: ResolvedSource
    G: torch.nn.Module
    D: torch.nn.Module | None
    device: torch.device

    @property
    def class_names(self) -> list[str] | None:
        return self.source.entry.class_names if self.source.entry else None

    def manifest(self) -> dict[str, Any]:
        """Name, path, URL and sha256 of the network file, for manifest.json."""
        entry = self.source.entry
        return dict(name=entry.name if entry else None, path=str(self.source.path), url=self.source.url,
                    sha256=self.source.sha256, description=entry.description if entry else None)


def require_mapping(G: torch.nn.Module, source: ResolvedSource) -> None:
    """One-line error for a generator without StyleGAN's mapping/synthesis split (e.g. a plain DCGAN run): the
    verbs work on ws."""
    if not (hasattr(G, 'mapping') and hasattr(G, 'synthesis')):
        raise StylelensError(f'{source.path} holds a {type(G).__name__}, which has no mapping network (z -> w) that '
                             f'stylelens verbs need: of the train models only mapping-dcgan has one')


def open_network(network: str, device: str = 'cpu', with_discriminator: bool = False) -> LoadedNetwork:
    """Resolve `--network`, load G_ema (and D if asked) onto the chosen device, then tune the CPU allocator.
    D is None for a `stylelens train` run; a generator without a mapping network is refused."""
    torch_device = pick_device(device)
    source = distributed.in_turn(lambda: resolve(network))  # under torchrun, one download per file
    if with_discriminator:
        nets = load_network(source, device=torch_device)
        loaded = LoadedNetwork(source, nets.get('G_ema', nets.get('G')), nets.get('D'), torch_device)
    else:
        loaded = LoadedNetwork(source, load_generator(source, device=torch_device), None, torch_device)
    require_mapping(loaded.G, source)
    tune_cpu_allocator()
    return loaded
