"""NVIDIA's VGG16 + LPIPS weights (`vgg16.pt`, a TorchScript archive) onto our `VGG16Features`: the registry entry,
the checksummed download cache, the one-line instructions when the file is absent, and the name map.

The archive is read with `stylelens.loading.torchscript_weights` (never `torch.jit.load`): its convolutions are
``layers.conv1`` … ``layers.conv13`` and its LPIPS channel weights ``lpips0`` … ``lpips4`` ([C, 1, 1]); its
classifier (``layers.fc1`` … ``fc3``) is not needed for distances and is left out.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from stylelens.errors import StylelensError
from stylelens.loading.download import cached_path, fetch_or_explain
from stylelens.loading.registry import RegistryEntry, get_feature_network
from stylelens.loading.torchscript_weights import read_torchscript_tensors
from stylelens.projection.perceptual import STAGES, VGG16Features

FEATURE_NETWORK = 'nvidia-vgg16-lpips'  # its name in the registry's "feature_networks"


def weights_entry() -> RegistryEntry:
    """The registry's entry for NVIDIA's vgg16.pt (URL; sha256 recorded on first download)."""
    return get_feature_network(FEATURE_NETWORK)


def cached_weights() -> Path | None:
    """The cached vgg16.pt if a download already put it there, else None (nothing is fetched)."""
    path = cached_path(weights_entry().url or '')
    return path if path.is_file() else None


def how_to_get() -> str:
    """Where the weights come from and where they go, as the tail of a one-line error."""
    url = weights_entry().url or ''
    return (f'download {url} elsewhere and pass it with --vgg PATH, or put it at {cached_path(url)}; '
            f'`stylelens project` fetches it there by itself when {urlparse(url).netloc} is reachable '
            f'(or use --loss mse, which needs no weights)')


def resolve_weights(path: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """`path` if given (it must exist), else the cached file, downloaded on first use (its sha256 recorded then and
    checked afterwards); a failed download becomes one line naming the cause and how to get the file by hand."""
    if path is not None:
        if not Path(path).is_file():
            raise StylelensError(f"--vgg '{path}': no such file; {how_to_get()}")
        return Path(path)
    entry = weights_entry()
    return fetch_or_explain(entry.url or '', entry.sha256, 'the VGG16 weights for LPIPS', how_to_get, progress)


def archive_names() -> dict[str, str]:
    """Our `VGG16Features` state-dict name -> the tensor's name in NVIDIA's archive (the classifier excluded)."""
    names = {}
    for index in range(sum(count for count, _ in STAGES)):
        for param in ('weight', 'bias'):
            names[f'convs.{index}.{param}'] = f'layers.conv{index + 1}.{param}'
    names.update({f'lpips{index}': f'lpips{index}' for index in range(len(STAGES))})
    return names


def features_from_tensors(tensors: dict[str, torch.Tensor], label: str) -> VGG16Features:
    """Our feature network filled with the archive's tensors; missing tensors, wrong shapes and negative LPIPS
    weights are refused in one line."""
    model = VGG16Features()
    state = model.state_dict()
    names = archive_names()
    missing = [source for source in names.values() if source not in tensors]
    if missing:
        shown = ', '.join(missing[:4]) + (f' and {len(missing) - 4} more' if len(missing) > 4 else '')
        raise StylelensError(f"'{label}' is not NVIDIA's VGG16 LPIPS archive: it lacks {shown}")
    for ours, source in names.items():
        value = tensors[source].detach()
        want = state[ours].shape
        if value.numel() != want.numel() or (ours.startswith('convs.') and value.shape != want):
            raise StylelensError(f"'{label}': {source} has shape {list(value.shape)}, expected {list(want)}")
        if ours.startswith('lpips') and bool((value < 0).any()):
            raise StylelensError(f"'{label}': {source} has negative LPIPS weights; LPIPS weights are non-negative")
        state[ours] = value.reshape(want).to(torch.float32)
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def load_vgg16(path: str | os.PathLike) -> VGG16Features:
    """Our VGG16 feature network with the weights of the TorchScript archive at `path`, read without running it."""
    return features_from_tensors(read_torchscript_tensors(path), os.fspath(path))
