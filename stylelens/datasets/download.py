"""Downloading the official data set files into the cache, checked against their published checksums."""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from stylelens.datasets.specs import DATASETS, DatasetSource, RemoteFile
from stylelens.errors import StylelensError
from stylelens.loading.download import cache_dir, download


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks: the checksum the dataset authors publish."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def data_dir(name: str) -> Path:
    """Where ``stylelens data download NAME`` puts a dataset by default: ``cache_dir()/data/NAME``."""
    return cache_dir() / 'data' / name


def dataset_source(name: str) -> DatasetSource:
    """The registry entry of a downloadable dataset, or an error listing the known names."""
    if name.lower() not in DATASETS:
        raise StylelensError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[name.lower()]


def _fetch(remote: RemoteFile, folder: Path, mirror: str | None, progress: bool) -> Path:
    """Download one file into ``folder`` unless a copy with the right MD5 is there; verify its MD5 after."""
    target = folder / remote.name
    if target.is_file() and file_md5(target) == remote.md5:
        return target
    url = f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url
    # The published checksums pin the content, so the downloader's trust-on-first-use store is kept private:
    # a bad first copy must not be recorded as the expected digest of this URL.
    with tempfile.TemporaryDirectory() as scratch:
        download(url, target, sha256=remote.sha256, progress=progress, hash_store=Path(scratch) / 'hashes.json')
    got = file_md5(target)
    if got != remote.md5:
        target.unlink()
        target.with_name(target.name + '.sha256').unlink(missing_ok=True)
        raise StylelensError(f'checksum mismatch for {url}: expected md5 {remote.md5}, got {got}; '
                             f'the downloaded file was deleted')
    return target


def download_dataset(name: str, dest: Path | None = None, mirror: str | None = None,
                     progress: bool = True) -> list[Path]:
    """Fetch the official files of dataset ``name`` into ``dest`` (default ``data_dir(name)``), checksummed and
    resumable; ``mirror`` is a base URL holding the same file names. Returns the local files."""
    source = dataset_source(name)
    folder = Path(dest).expanduser() if dest else data_dir(source.name)
    folder.mkdir(parents=True, exist_ok=True)
    return [_fetch(remote, folder, mirror, progress) for remote in source.files]
