"""Seeds -> ws -> images, batched: the engine behind `stylelens generate` and the Python API."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from stylelens.devices import precision_context
from stylelens.latents import class_to_c, seeds_to_z
from stylelens.outputs import to_uint8


@dataclass
class GeneratedBatch:
    """One batch of results: the seeds, their ws [N, num_ws, w_dim] and uint8 images [N, H, W, C]."""

    seeds: list[int]
    ws: np.ndarray
    images: np.ndarray


def seeds_to_ws(G: torch.nn.Module, seeds: Sequence[int], *, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, class_idx: int | str | None = None,
                class_names: Sequence[str] | None = None, device: torch.device | str = 'cpu') -> torch.Tensor:
    """Map seeds (official z convention) and an optional class to ws [N, num_ws, w_dim] in one mapping pass."""
    z = torch.from_numpy(seeds_to_z(seeds, G.z_dim)).to(device)
    c = torch.from_numpy(class_to_c(class_idx, G.c_dim, len(seeds), class_names)).to(device)
    with torch.no_grad():
        return G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)


def map_z(G: torch.nn.Module, z: Any, *, truncation_psi: float = 1, truncation_cutoff: int | None = None,
          class_idx: int | str | None = None, class_names: Sequence[str] | None = None) -> torch.Tensor:
    """Map latents z [N, z_dim] (and one class for all) to ws [N, num_ws, w_dim] in one call, without autograd."""
    device = next(G.parameters()).device
    z = torch.as_tensor(z).to(device)
    c = torch.from_numpy(class_to_c(class_idx, G.c_dim, z.shape[0], class_names)).to(device)
    with torch.no_grad():
        return G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)


def synthesize(G: torch.nn.Module, ws: torch.Tensor, *, noise_mode: str = 'const',
               precision: str = 'fp32') -> torch.Tensor:
    """ws -> float images NCHW (float32) under the requested precision, without autograd."""
    device = ws.device
    with torch.no_grad(), precision_context(precision, device):
        return G.synthesis(ws, noise_mode=noise_mode).float()


def generate_images(G: torch.nn.Module, seeds: Sequence[int], *, truncation_psi: float = 1,
                    truncation_cutoff: int | None = None, class_idx: int | str | None = None,
                    class_names: Sequence[str] | None = None, noise_mode: str = 'const', batch_size: int = 8,
                    precision: str = 'fp32', noise_seed: int | None = None,
                    batches: Iterable[int] | None = None) -> Iterator[GeneratedBatch]:
    """Yield batches of images for `seeds`; all seeds are mapped in one pass, synthesis runs `batch_size` at a time.

    `batches` picks which of those batches to render (default all): under torchrun each rank renders its share
    (`stylelens.distributed.shard`), each in the very batch a single process renders it in, so the bytes agree.
    With `noise_mode='random'` the noise comes from torch's generator seeded with `noise_seed` (default: the
    first seed), so the same command gives the same images.
    """
    device = next(G.parameters()).device
    ws = seeds_to_ws(G, seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                     class_idx=class_idx, class_names=class_names, device=device)
    if noise_mode == 'random':
        torch.manual_seed(noise_seed if noise_seed is not None else seeds[0])
    starts = range(0, len(seeds), batch_size)
    for start in starts if batches is None else [starts[k] for k in batches]:
        batch_ws = ws[start:start + batch_size]
        images = synthesize(G, batch_ws, noise_mode=noise_mode, precision=precision)
        yield GeneratedBatch(list(seeds[start:start + batch_size]), batch_ws.cpu().numpy(), to_uint8(images))
