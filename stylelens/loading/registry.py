"""The registry of known networks, and turning a ``--network`` value (path, URL or name) into a local file."""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, fields
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from stylelens.errors import StylelensError
from stylelens.loading.download import cache_dir as default_cache_dir
from stylelens.loading.download import fetch_cached, remembered_sha256, stored_digest
from stylelens.loading.runs import RUN_GENERATOR, run_generator_path


@dataclass
class RegistryEntry:
    """One known network; ``resolution``/``c_dim``/``img_channels`` are None for embedded entries (read them from
    the loaded network instead)."""

    name: str
    kind: str
    description: str = ''
    format: str = 'official-pickle'
    url: str | None = None
    path: str | None = None
    resolution: int | None = None
    c_dim: int | None = None
    img_channels: int | None = None
    class_names: list[str] | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    source: str | None = None
    licence: str | None = None
    community: bool = False

    @property
    def embedded(self) -> bool:
        """True when the file ships inside stylelens rather than being downloaded."""
        return self.kind == 'embedded'

    def local_path(self) -> Path:
        """Filesystem path of an embedded entry's file (copied into the cache if the package is zipped)."""
        res = _data_dir() / (self.path or '')
        if isinstance(res, Path):
            return res
        target = default_cache_dir() / 'embedded' / Path(self.path or self.name).name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(res.read_bytes())
        return target


@dataclass
class ResolvedSource:
    """A ``--network`` value turned into a local file, with the registry entry and URL it came from, if any."""

    path: Path
    entry: RegistryEntry | None = None
    url: str | None = None

    @cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of the file: the digest stored beside a download if still valid, else computed (once)."""
        return stored_digest(self.path) or remembered_sha256(self.path)


def _data_dir() -> Any:
    """The installed ``stylelens.checkpoints`` data, or ``checkpoints/`` beside ``stylelens/`` in a source tree."""
    try:
        return resources.files('stylelens.checkpoints')
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / 'checkpoints'


@functools.lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    return json.loads((_data_dir() / 'registry.json').read_text(encoding='utf-8'))


def _entries(section: str, community: bool = False) -> list[RegistryEntry]:
    names = {f.name for f in fields(RegistryEntry)}
    return [RegistryEntry(**{**{k: v for k, v in raw.items() if k in names}, 'community': community})
            for raw in _document().get(section, [])]


@functools.lru_cache(maxsize=1)
def _load() -> tuple[RegistryEntry, ...]:
    return tuple(_entries('networks') + _entries('community', community=True))


def get_feature_network(name: str) -> RegistryEntry:
    """A feature network that metrics run images through (registry section ``feature_networks``), e.g. the FID
    Inception; these are not generators, so ``list_entries`` leaves them out."""
    for entry in _entries('feature_networks'):
        if entry.name == name:
            return entry
    known = ', '.join(e.name for e in _entries('feature_networks')) or 'none'
    raise StylelensError(f'unknown feature network {name!r} (known: {known}); fix checkpoints/registry.json')


def list_entries() -> list[RegistryEntry]:
    """All registry entries: official and embedded first, then community ones."""
    return list(_load())


def default_network_name() -> str:
    """The network used when ``--network`` is not given: the embedded demo, so nothing needs downloading."""
    return 'demo'


def _known() -> str:
    return ', '.join(e.name for e in _load())


def get_entry(name: str) -> RegistryEntry:
    """The registry entry called ``name``; an unknown name is a user error listing the choices."""
    for entry in _load():
        if entry.name == name:
            return entry
    raise StylelensError(f'unknown network name {name!r} (known: {_known()}); '
                         f'a file path or an http(s) URL is also accepted')


def resolve_source(source: str, *, cache_dir: Path | str | None = None, progress: bool = True) -> ResolvedSource:
    """Turn a ``--network`` value into a local file: an existing path as is (a ``stylelens train`` run folder as
    its ``generator.pt``), an http(s) URL or registry name via the download cache (checksummed), an embedded entry
    from the package data."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else None
    path = Path(source).expanduser()
    named = next((e for e in _load() if e.name == source), None)
    if path.is_file():
        return ResolvedSource(path=path)
    if path.is_dir() and (named is None or (path / RUN_GENERATOR).is_file()):

        return ResolvedSource(path=run_generator_path(path))
    if re.match(r'https?://', source, re.IGNORECASE):
        entry = next((e for e in _load() if e.url == source), None)
        sha = entry.sha256 if entry else None
        return ResolvedSource(fetch_cached(source, sha256=sha, root=root, progress=progress), entry, source)
    if named is None:
        raise StylelensError(f'no network {source!r}: not a file, not an http(s) URL, and not a registry name '
                             f'(known: {_known()})')
    return resolve_entry(named, root=root, progress=progress)


def resolve_entry(entry: RegistryEntry, *, root: Path | None = None, progress: bool = True) -> ResolvedSource:
    """The local file of a registry entry: shipped in the package, or fetched into the download cache."""
    if entry.embedded:
        local = entry.local_path()
        if not local.is_file():
            raise StylelensError(f'network {entry.name!r} should be shipped at {local} but is missing; '
                                 f'reinstall stylelens or pass a file path or URL')
        return ResolvedSource(local, entry)
    if not entry.url:
        raise StylelensError(f'registry entry {entry.name!r} has neither a url nor a path; '
                             f'fix checkpoints/registry.json')
    local = fetch_cached(entry.url, sha256=entry.sha256, root=root, progress=progress)
    return ResolvedSource(local, entry, entry.url)
