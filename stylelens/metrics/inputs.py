"""What the metrics compare, as uint8 image batches: real data (a data spec, a folder, an .npz of images or of
statistics) and fakes (a generator or any `sample(n, first_seed)` function, or a folder of images)."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stylelens import distributed
from stylelens.errors import StylelensError
from stylelens.latents import seeds_to_z
from stylelens.loading.runs import RUN_GENERATOR
from stylelens.metrics.features import Features, load_npz
from stylelens.outputs import to_uint8

Sampler = Callable[[int, int], Any]  # (n, first_seed) -> n images NCHW: uint8, or float in [-1, 1]
_REAL_CHOICES = ('a data spec KIND:PATH[:CLASSES] (cifar10, mnist, fashion-mnist, folder), a folder of images, '
                 'or an .npz of images or of statistics (mu, sigma)')


@dataclass
class RealData:
    """Real images as uint8 NCHW, or statistics someone computed before (then `pixels` is None)."""

    description: str
    pixels: torch.Tensor | None = None
    precomputed: Features | None = None


@dataclass
class FakeData:
    """Fakes as a sampler of seeded batches, or fixed uint8 NCHW images; `network` describes a generator's file."""

    description: str
    sampler: Sampler | None = None
    pixels: torch.Tensor | None = None
    network: dict[str, Any] = field(default_factory=dict)


def as_uint8(images: Any) -> torch.Tensor:
    """A batch NCHW as uint8 on the CPU: uint8 as is, floats in [-1, 1] with the official conversion (x * 127.5 +
    128, clamped, truncated), the same one that turns generated images into PNGs."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise StylelensError(f'expected a batch of images [N, C, H, W], got {getattr(images, "shape", images)!r}')
    if images.dtype == torch.uint8:
        return images.cpu()
    if not images.is_floating_point():
        raise StylelensError(f'images must be uint8 or floats in [-1, 1], got {images.dtype}')
    return torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2)


def _nchw(array: np.ndarray, where: str) -> torch.Tensor:
    """uint8 images from an .npz, NHWC or NCHW (1 or 3 channels), as NCHW."""
    if array.dtype != np.uint8 or array.ndim != 4:
        raise StylelensError(f'{where}: expected uint8 images [N, H, W, C] or [N, C, H, W], got {array.dtype} '
                             f'{array.shape}')
    if array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array))


def _npz_images(path: Path) -> torch.Tensor:
    """The images of an .npz: its `images` array, or its only array."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data)
            if 'images' in names or len(names) == 1:
                return _nchw(data['images' if 'images' in names else names[0]], str(path))
    except (OSError, ValueError) as error:  # e.g. arrays of Python objects, which are never unpickled
        raise StylelensError(f'cannot read images from {path}: {error}') from None
    raise StylelensError(f'{path} has neither mu and sigma nor images (arrays: {", ".join(names) or "none"})')


def _first(pixels: torch.Tensor, num: int | None) -> torch.Tensor:
    return pixels if num is None else pixels[:num]


def load_real(value: Any, *, split: str = 'train', num: int | None = None) -> RealData:
    """`--real`: a data spec for `stylelens.datasets.load_dataset`, a folder of images, an .npz of statistics
    (mu, sigma; optionally features) or of uint8 images, an ImageDataset, or a uint8 NCHW tensor; `num` keeps the
    first images only."""
    from stylelens.datasets import ImageDataset, load_dataset

    if isinstance(value, ImageDataset):
        return RealData(value.spec, _first(value.pixels, num))
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return RealData(f'{len(value)} images given', _first(as_uint8(value), num))
    text = os.fspath(value)
    path = Path(text).expanduser()
    if path.suffix.lower() == '.npz' and path.is_file():
        stats = load_npz(path)
        if stats is not None:
            return RealData(str(path), precomputed=stats)
        return RealData(str(path), _first(_npz_images(path), num))
    if path.is_dir():
        return RealData(str(path), _first(load_dataset(f'folder:{path}').pixels, num))
    if ':' not in text:
        raise StylelensError(f'--real {text!r}: no such file or folder; expected {_REAL_CHOICES}')
    return RealData(f'{text} ({split} split)', _first(load_dataset(text, split).pixels, num))


def _labels(seeds: range, c_dim: int, device: torch.device) -> torch.Tensor:
    """One-hot classes cycling with the seed (seed % c_dim), so every class gets an equal share; [N, 0] if none."""
    if not c_dim:
        return torch.zeros([len(seeds), 0], device=device)
    return F.one_hot(torch.tensor([s % c_dim for s in seeds]), c_dim).float().to(device)


def generator_sampler(G: torch.nn.Module) -> Sampler:
    """`sample(n, first_seed)` for a generator: z of each seed as NVIDIA's generate.py (RandomState(seed).randn),
    truncation 1, classes cycling with the seed, and for StyleGAN-like networks random noise seeded by
    `first_seed` (so fakes depend on the batch size only through the noise). G runs in eval mode and is put back
    in the mode it was in, so a training loop can pass its G."""
    device = next(G.parameters()).device

    def sample(n: int, first_seed: int) -> torch.Tensor:
        seeds = range(first_seed, first_seed + n)
        z = torch.from_numpy(seeds_to_z(seeds, G.z_dim)).float().to(device)
        c = _labels(seeds, getattr(G, 'c_dim', 0), device)
        training = G.training
        G.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []):
                torch.manual_seed(first_seed)
                return G(z, c, noise_mode='random') if hasattr(G, 'synthesis') else G(z, c)
        finally:
            G.train(training)

    return sample


def open_fake(value: Any, device: str | torch.device = 'cpu', *, progress: bool = True) -> FakeData:
    """`--fake`: a folder of images, a `stylelens train` run folder, any network `load_generator` reads (path, URL,
    registry name), an nn.Module generator, or a sampler function."""
    if isinstance(value, torch.nn.Module):
        return FakeData(type(value).__name__, sampler=generator_sampler(value))
    if callable(value):
        return FakeData(getattr(value, '__name__', 'sampler'), sampler=value)
    path = Path(os.fspath(value)).expanduser()
    if path.is_dir() and not (path / RUN_GENERATOR).is_file():
        from stylelens.datasets import load_dataset

        return FakeData(str(path), pixels=load_dataset(f'folder:{path}').pixels)
    from stylelens.loading.network import load_generator, resolve

    source = resolve(os.fspath(value), progress)
    G = load_generator(source, device=device, progress=progress)
    entry = source.entry
    network = dict(name=entry.name if entry else None, path=str(source.path), url=source.url, sha256=source.sha256)
    return FakeData(os.fspath(value), sampler=generator_sampler(G), network=network)


def batches_of(pixels: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    """Fixed images, `batch` at a time (under torchrun, this rank's share of the batches)."""
    for start in distributed.shard(range(0, len(pixels), batch)):
        yield pixels[start:start + batch]


def sampled_batches(sampler: Sampler, num: int, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """`num` images from the sampler as uint8, `batch` per call, for seeds seed .. seed + num - 1; under torchrun
    this rank's share of those calls, each with the seeds (and so the noise) it has in one process."""
    for start in distributed.shard(range(0, num, batch)):
        n = min(batch, num - start)
        images = as_uint8(sampler(n, seed + start))
        if len(images) != n:
            raise StylelensError(f'the sampler returned {len(images)} images where {n} were asked for')
        yield images
