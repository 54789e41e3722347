"""Getting the Inception weight file: the registry entry, the checksummed download cache, and the one-line
instructions when neither has it."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from stylelens.loading.download import cached_path, fetch_or_explain
from stylelens.loading.registry import RegistryEntry, get_feature_network

FEATURE_NETWORK = 'pytorch-fid-inception-2015-12-05'  # its name in the registry's "feature_networks"


def weights_entry() -> RegistryEntry:
    """The registry's entry for the FID Inception weights (URL, full sha256, size)."""
    return get_feature_network(FEATURE_NETWORK)


def official_sha256() -> str:
    """SHA-256 of pytorch-fid's weight file: scores from other weights are not comparable with published ones."""
    return (weights_entry().sha256 or '').lower()


def how_to_get() -> str:
    """Where the weights come from and where they go, as the tail of a one-line error."""
    entry = weights_entry()
    host = urlparse(entry.url or '').netloc
    return (f'download {entry.url} (sha256 {entry.sha256}) and pass it with --inception PATH, or put it at '
            f'{cached_path(entry.url or "")}; `stylelens metrics` fetches it there by itself when {host} is '
            f'reachable')


def resolve_weights(progress: bool = True) -> Path:
    """The cached weight file, downloaded and verified against the registry's sha256 on first use; a failed
    download becomes one line naming the cause and how to get the file by hand."""
    entry = weights_entry()
    return fetch_or_explain(entry.url or '', entry.sha256, 'the FID Inception weights', how_to_get, progress)
