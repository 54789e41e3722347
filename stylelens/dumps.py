"""Activation dumps too large for one folder per seed: the seeds in chunks, resumable, shared out over ranks.

Layout of a dump folder::

    index.json                  what the dump holds: the seeds, the hook points, the options, the chunks in order
    chunk-000000/seeds.npy      the chunk's seeds [n]
    chunk-000000/b8.x.npy       one array [n, ...] per hook point and part (`x`, `img`, a layer's `out`)
    ...
    manifest.json               written last, once every chunk is there

A chunk is filled seed by seed (batch 1, as `stylelens activations` runs G) into memory-mapped .npy files in
`.chunk-000000.partial/`, which is renamed into place when complete, so a chunk folder is always whole. Rank r of K
writes chunks r, r+K, ...; a chunk's bytes do not depend on who wrote it. A re-run of the same command skips the
chunks that are there (a killed run resumes); a re-run with other options is refused. `iter_dump` reads a finished
dump one chunk at a time, memory-mapped, so a dump far larger than memory can be streamed.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylelens import distributed
from stylelens.activations import image_layers, plan_hooks, record_parts
from stylelens.choices import NOISE_MODES, check_choice
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws, synthesize
from stylelens.outputs import atomic_write_text, ensure_outdir, to_jsonable, write_manifest
from stylelens.probes import Recorded, probe

FORMAT, VERSION = 'stylelens-dump', 1
INDEX = 'index.json'


@dataclass
class DumpPlan:
    """What one dump run does: the network, the hook points, the seeds in chunks, and the chunks already there."""

    G: torch.nn.Module
    outdir: Path
    hooks: list[str]
    block_hooks: set[str]
    seeds: list[int]
    chunk_size: int
    options: dict[str, Any]
    class_names: Sequence[str] | None = None
    network: dict | None = None
    done: set[str] = field(default_factory=set)

    @property
    def chunks(self) -> list[str]:
        """Every chunk's folder name, in seed order."""
        return [chunk_name(k) for k in range(-(-len(self.seeds) // self.chunk_size))]

    def chunk_seeds(self, name: str) -> list[int]:
        """The seeds of one chunk."""
        k = int(name.removeprefix('chunk-'))
        return self.seeds[k * self.chunk_size:(k + 1) * self.chunk_size]

    @property
    def done_seeds(self) -> int:
        """How many seeds the chunks already there hold (where a resumed run's progress starts)."""
        return sum(len(self.chunk_seeds(name)) for name in self.done)


@dataclass
class DumpChunk:
    """One chunk of a finished dump: its seeds and its arrays [n, ...] by name (`b8.x`), memory-mapped."""

    name: str
    seeds: np.ndarray
    arrays: dict[str, np.ndarray]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


def chunk_name(k: int) -> str:
    """The folder of chunk k: `chunk-000012`."""
    return f'chunk-{k:06d}'


def plan_dump(G: torch.nn.Module, seeds: Sequence[int], outdir: str | os.PathLike, *, chunk_size: int,
              blocks: Sequence[str] | str | None = None, layers: Sequence[str] | None = None,
              truncation_psi: float = 1, truncation_cutoff: int | None = None, class_idx: int | str | None = None,
              class_names: Sequence[str] | None = None, noise_mode: str = 'const',
              dtype: torch.dtype = torch.float32, network: dict | None = None) -> DumpPlan:
    """Check the request, then (rank 0) write `index.json`, or find the one a previous run of the same request
    wrote and the chunks it finished; a dump folder made with other options is refused in one line."""
    check_choice(noise_mode, NOISE_MODES, 'noise mode')
    if chunk_size < 1 or not seeds:
        raise StylelensError(f'a dump needs seeds and --chunk of at least 1 (got {len(seeds)} seeds, --chunk '
                             f'{chunk_size})')
    chosen, hooks, block_hooks = plan_hooks(G, blocks, layers, class_idx, class_names)
    options = dict(blocks=chosen, layers=[h for h in hooks if h not in block_hooks], truncation_psi=truncation_psi,
                   truncation_cutoff=truncation_cutoff, class_idx=class_idx, noise_mode=noise_mode,
                   dtype=str(dtype).replace('torch.', ''), network_sha256=(network or {}).get('sha256'))
    plan = DumpPlan(G, ensure_outdir(outdir), hooks, block_hooks, list(seeds), chunk_size, options, class_names,
                    network)
    plan.done = distributed.from_main(lambda: _open_index(plan))
    return plan


def _index(plan: DumpPlan) -> dict[str, Any]:
    """The index of a dump: format, options, seeds and the chunks in order (what `iter_dump` reads)."""
    chunks = [dict(name=name, seeds=len(plan.chunk_seeds(name))) for name in plan.chunks]
    return to_jsonable(dict(format=FORMAT, version=VERSION, chunk_size=plan.chunk_size, options=plan.options,
                            hooks=plan.hooks, seeds=plan.seeds, chunks=chunks))


def _open_index(plan: DumpPlan) -> set[str]:
    """Write the index of a new dump, or check that an existing one describes this very dump; the names of the
    chunks already finished."""
    path, index = plan.outdir / INDEX, _index(plan)
    if path.is_file():
        old = _read_json(path)
        if old != index:
            differs = sorted(k for k in index if old.get(k) != index[k]) or ['format']
            raise StylelensError(f"{plan.outdir} holds a dump made with other settings ({', '.join(differs)} differ):"
                                 f' re-run with the same ones to resume it, or pick another --outdir')
    else:
        atomic_write_text(path, json.dumps(index, indent=1) + '\n')
    return {name for name in plan.chunks if (plan.outdir / name).is_dir()}


def write_dump(plan: DumpPlan, progress: Callable[[int], None] | None = None) -> list[str]:
    """Dump this rank's chunks that are not there yet (rank r of K: chunks r, r+K, ...), calling `progress` per
    seed; then rank 0 writes the manifest. Returns every chunk folder's name."""
    for name in distributed.shard(plan.chunks):
        if name not in plan.done:
            _write_chunk(plan, name, progress)
    distributed.barrier()
    if distributed.is_main():
        write_manifest(plan.outdir, command='activations', options=dict(part='G', chunk=plan.chunk_size,
                                                                        seeds=plan.seeds, **plan.options),
                       network=plan.network, extra=dict(files=[INDEX, *plan.chunks]))
    return plan.chunks


class _ChunkWriter:
    """The probe callback of one chunk: each record of seed i goes to row i of its memory-mapped .npy file."""

    def __init__(self, folder: Path, count: int, plan: DumpPlan):
        self.folder, self.count, self.plan, self.row = folder, count, plan, 0
        self.images, self.dtype = image_layers(plan.G), getattr(torch, plan.options['dtype'])
        self.files: dict[str, np.ndarray] = {}

    def __call__(self, name: str, value: Recorded) -> None:
        stem = name.removeprefix('synthesis.')
        for part, tensor in record_parts(name, value, self.plan.block_hooks, 'x', self.images).items():
            array = tensor[0].to(self.dtype if tensor.is_floating_point() else tensor.dtype).numpy()
            key = f'{stem}.{part}'
            if key not in self.files:
                self.files[key] = np.lib.format.open_memmap(self.folder / f'{key}.npy', mode='w+', dtype=array.dtype,
                                                            shape=(self.count, *array.shape))
            self.files[key][self.row] = array

    def close(self) -> None:
        """Flush every array to disk."""
        for array in self.files.values():
            array.flush()
        self.files.clear()


def _write_chunk(plan: DumpPlan, name: str, progress: Callable[[int], None] | None) -> None:
    """Fill `.{name}.partial/` seed by seed, then rename it to `name` (a killed run leaves only the partial folder,
    which the next run replaces)."""
    seeds, G = plan.chunk_seeds(name), plan.G
    partial = plan.outdir / f'.{name}.partial'
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    writer = _ChunkWriter(partial, len(seeds), plan)
    opts = plan.options
    with probe(G, plan.hooks, on_record=writer):
        for row, seed in enumerate(seeds):
            writer.row = row
            ws = seeds_to_ws(G, [seed], truncation_psi=opts['truncation_psi'],
                             truncation_cutoff=opts['truncation_cutoff'], class_idx=opts['class_idx'],
                             class_names=plan.class_names, device=next(G.parameters()).device)
            if opts['noise_mode'] == 'random':
                torch.manual_seed(seed)
            synthesize(G, ws, noise_mode=opts['noise_mode'])
            if progress is not None:
                progress(1)
    writer.close()
    np.save(partial / 'seeds.npy', np.asarray(seeds, dtype=np.int64))
    os.replace(partial, plan.outdir / name)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict; an unreadable one is a one-line error."""
    try:
        value = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError) as err:
        raise StylelensError(f'cannot read {path}: {err}') from None
    if not isinstance(value, dict):
        raise StylelensError(f'{path} is not a stylelens dump index')
    return value


def read_index(path: str | os.PathLike) -> dict[str, Any]:
    """A finished dump's index; a folder that is not a dump, or one whose run has not finished, is a one-line error."""
    folder = Path(path)
    index = _read_json(folder / INDEX) if (folder / INDEX).is_file() else {}
    if index.get('format') != FORMAT or index.get('version') != VERSION:
        raise StylelensError(f'{folder} is not a stylelens dump (no {INDEX} of format {FORMAT} v{VERSION}): write '
                             f'one with `stylelens activations --chunk N`')
    missing = [c['name'] for c in index['chunks'] if not (folder / c['name']).is_dir()]
    if missing:
        raise StylelensError(f'{folder} is unfinished: {len(missing)} of {len(index["chunks"])} chunks are missing '
                             f'(first {missing[0]}); re-run the command that made it to finish it')
    return index


def iter_dump(path: str | os.PathLike, names: Sequence[str] | None = None) -> Iterator[DumpChunk]:
    """The chunks of a finished dump in seed order, each with its seeds and its arrays (all, or those in `names`,
    e.g. ['b8.x']) memory-mapped: only what is touched is read, so dumps larger than memory stream."""
    folder = Path(path)
    index = read_index(folder)
    for chunk in index['chunks']:
        files = sorted(p for p in (folder / chunk['name']).glob('*.npy') if p.name != 'seeds.npy')
        arrays = {p.name.removesuffix('.npy'): p for p in files}
        unknown = sorted(set(names or []) - set(arrays))
        if unknown:
            raise StylelensError(f"no array {', '.join(unknown)} in {folder} (arrays: {', '.join(arrays)})")
        yield DumpChunk(chunk['name'], np.load(folder / chunk['name'] / 'seeds.npy'),
                        {key: np.load(p, mmap_mode='r') for key, p in arrays.items() if names is None or key in names})

