"""The public loaders: `--network` value -> safe unpickling -> our rebuilt modules, as the official loader returns them.

A `stylelens train` run (its folder or `generator.pt`) is read by `loading.runs`, with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from stylelens.errors import StylelensError
from stylelens.loading.formats import ROSINALITY, SAFETENSORS, TENSORFLOW, detect_format
from stylelens.loading.rebuild import rebuild
from stylelens.loading.records import PersistentRecord, materialize_tensors, to_plain
from stylelens.loading.registry import ResolvedSource, default_network_name, get_entry, resolve_entry, resolve_source
from stylelens.loading.runs import RUN_GENERATOR, load_run_generator
from stylelens.loading.safe_pickle import load_snapshot

NETWORK_KEYS = ('G', 'D', 'G_ema')
_ZIP_MAGIC = b'PK\x03\x04'


def resolve(source: str | os.PathLike | ResolvedSource | None, progress: bool = True) -> ResolvedSource:
    """A path, URL, registry name (None = the embedded default) or an already resolved source, as a local file."""
    if isinstance(source, ResolvedSource):
        return source
    if source is None:  # by name only: a file or folder called like the default in the working directory is not it
        return resolve_entry(get_entry(default_network_name()), progress=progress)
    return resolve_source(str(source), progress=progress)


def is_run_generator(path: Path) -> bool:
    """True for a `stylelens train` generator file: named generator.pt, or a torch.save zip that is not a
    rosinality checkpoint (never a snapshot). Unreadable paths are False, so the snapshot loader reports them."""
    if path.name == RUN_GENERATOR:
        return True
    try:
        with open(path, 'rb') as f:
            zipped = f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
    except OSError:
        return False
    return zipped and detect_format(path) != ROSINALITY


def _load_run_generator(resolved: ResolvedSource, device: str | torch.device) -> torch.nn.Module:
    """G of a `stylelens train` run on `device`."""
    return load_run_generator(resolved.path).to(device)


def _load_other_format(path: Path, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """The networks `keys` (of G, D, G_ema) of a TensorFlow pickle, a rosinality checkpoint or a stylelens
    safetensors export, rebuilt as our official-layout modules, plus `training_set_kwargs` and `augment_pipe`; None for official pickles."""
    fmt = detect_format(path)
    if fmt == TENSORFLOW:
        from stylelens.loading.tf_pickle import load_tf_networks

        return load_tf_networks(path, keys)
    if fmt == ROSINALITY:
        from stylelens.loading.rosinality import load_rosinality_networks

        return load_rosinality_networks(path, keys)
    if fmt == SAFETENSORS:
        from stylelens.loading.safetensors_file import load_safetensors_networks

        return load_safetensors_networks(path, keys)
    return None


def _read_snapshot(resolved: ResolvedSource) -> dict:
    """The snapshot dict with network records, tensors decoded only when used; anything else is refused in one line."""
    snapshot = load_snapshot(resolved.path, lazy_tensors=True)
    if not isinstance(snapshot, dict) or not any(isinstance(snapshot.get(k), PersistentRecord) for k in NETWORK_KEYS):
        found = ', '.join(map(str, snapshot)) if isinstance(snapshot, dict) else type(snapshot).__name__
        raise StylelensError(f"{resolved.path} is a pickle but not a network snapshot: expected keys G, D, G_ema "
                             f"(found: {found or 'nothing'})")
    return snapshot


def load_network(source: str | os.PathLike | ResolvedSource | None = None, *, device: str | torch.device = 'cpu',
                 progress: bool = True) -> dict[str, Any]:
    """Load a snapshot as the official loader does: {'G', 'D', 'G_ema', 'training_set_kwargs', 'augment_pipe'}.

    TensorFlow pickles and rosinality checkpoints are read too, their networks rebuilt in the official layout (a
    format without some network gives None for it). Networks are our vendor modules in eval mode with gradients off; `augment_pipe` is returned as its inert
    record (never executed), or None. A `stylelens train` run gives its generator as both G and G_ema, and D None
    (`generator.pt` holds no discriminator).
    """
    resolved = resolve(source, progress)
    if is_run_generator(resolved.path):
        G = _load_run_generator(resolved, device)
        return dict(G=G, G_ema=G, D=None, training_set_kwargs=None, augment_pipe=None)
    other = _load_other_format(resolved.path, NETWORK_KEYS)
    if other is not None:
        return {k: v.to(device) if isinstance(v, torch.nn.Module) else v for k, v in other.items()}
    snapshot = _read_snapshot(resolved)
    records = {k: snapshot[k] for k in NETWORK_KEYS if isinstance(snapshot.get(k), PersistentRecord)}
    result: dict[str, Any] = {k: rebuild(rec, k).to(device) for k, rec in records.items()}
    result['training_set_kwargs'] = to_plain(materialize_tensors(snapshot.get('training_set_kwargs')))
    result['augment_pipe'] = materialize_tensors(snapshot.get('augment_pipe'))
    return result


def load_generator(source: str | os.PathLike | ResolvedSource | None = None, *,
                   device: str | torch.device = 'cpu', progress: bool = True) -> torch.nn.Module:
    """The `G_ema` generator of a snapshot (or `G` where a file has no G_ema), or a train run's G; only that
    network is rebuilt."""
    resolved = resolve(source, progress)
    if is_run_generator(resolved.path):
        return _load_run_generator(resolved, device)
    other = _load_other_format(resolved.path, ('G_ema',))
    if other is not None:
        return other['G_ema'].to(device)
    snapshot = _read_snapshot(resolved)
    key = 'G_ema' if isinstance(snapshot.get('G_ema'), PersistentRecord) else 'G'
    if not isinstance(snapshot.get(key), PersistentRecord):
        raise StylelensError('this snapshot holds no generator (no G_ema or G)')
    record = snapshot[key]
    return rebuild(record, key).to(device)
