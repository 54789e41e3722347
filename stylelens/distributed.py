"""Scale-out under torchrun, in one place: who this process is, its share of the work, the collectives that combine
the shares, rank-0-only writing and one-line errors that stop every rank.

A verb runs the same code in every process. `shard` deals items round-robin (rank r of K takes items r, r+K, ...),
`gather_shards` puts the ranks' results back in the original order (`gather_to_main`: on rank 0 only), `all_sum`
adds float64 statistics over ranks, `ordered_sum` adds per-item float64 terms in item order (so the sum has one
process's bits for any number of ranks; `ordered_centred_sums` does it twice, about the chunks' mean), `from_main` hands everyone a value rank 0 computed, and `is_main` guards
what only rank 0 writes (manifests, summaries, figures). In one process (no torchrun, or a world of 1) every helper is the identity, so the single-process code path
is the distributed one. Collectives run on gloo (CPU tensors) or NCCL (CUDA tensors, when the node has GPUs).

Every collective starts with a barrier kept in torchrun's key-value store that also watches for a failed rank: a rank
that fails records its one-line error there (`claim_failure`) and the others raise `PeerFailed` at their next sync
point or progress update, instead of blocking in a collective the failed rank will never join.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from stylelens.errors import StylelensError
from stylelens.progress import progress_bar

T = TypeVar('T')
TIMEOUT_S = 1800           # longest wait for the other ranks at a sync point (torch's own collective timeout)
_ERROR = 'error'           # store key holding the first failed rank's one-line error
_POLL_S = (0.001, 0.05)    # first and longest pause between looks at the store while waiting


class PeerFailed(Exception):
    """Another rank failed: this one stops without a message of its own (the failed rank prints its error)."""


@dataclass
class _Session:
    """The process group's store, this rank, the world size, and counters naming sync points and progress bars (the
    same on every rank, since every rank makes the same calls in the same order)."""

    store: dist.Store
    rank: int
    size: int
    syncs: int = 0
    bars: int = 0
    refresh: Callable[[], None] | None = None  # the open progress bar's redraw, called while waiting at a barrier


_session: _Session | None = None


def start(timeout_s: float = TIMEOUT_S) -> None:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT):
    gloo for CPU tensors, NCCL for CUDA ones where the node has a GPU per rank (each rank on GPU LOCAL_RANK)."""
    global _session
    rank, size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    timeout = datetime.timedelta(seconds=timeout_s)
    agent_store = os.environ.get('TORCHELASTIC_USE_AGENT_STORE') == 'True'  # torchrun hosts the store itself
    try:
        store = dist.TCPStore(os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT']), size,
                              is_master=rank == 0 and not agent_store, timeout=timeout)
    except (KeyError, ValueError, RuntimeError) as err:
        raise StylelensError(f'cannot join the torchrun process group: {str(err).splitlines()[0]}') from None
    backend = 'gloo'
    local_rank, local_size = int(os.environ.get('LOCAL_RANK', 0)), int(os.environ.get('LOCAL_WORLD_SIZE', 1))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        if torch.cuda.device_count() >= local_size:  # NCCL wants one GPU per rank; ranks sharing one use gloo
            backend = 'cpu:gloo,cuda:nccl'
    attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
    dist.init_process_group(backend, store=dist.PrefixStore(f'stylelens-pg/{attempt}', store), rank=rank,
                            world_size=size, timeout=timeout)
    _session = _Session(dist.PrefixStore(f'stylelens/{attempt}', store), rank, size)


def stop(wait: bool = True) -> None:
    """Leave the process group; with `wait`, first wait until every rank has finished (so the store outlives all)."""
    global _session
    if wait:
        barrier()
    _session = None
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank (0 outside torchrun)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """How many processes share the work (1 outside torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the one process that writes manifests, summaries and figures."""
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of `items`, dealt round-robin: rank r of K takes items r, r+K, r+2K, ..."""
    return list(items)[rank()::world_size()]


def gather_shards(mine: Sequence[T]) -> list[T]:
    """Every rank's share (as `shard` dealt them) back in the original order, on every rank: the inverse of `shard`."""
    size = world_size()
    if size == 1:
        return list(mine)
    shares: list[list[T]] = [[] for _ in range(size)]
    _arrive()
    dist.all_gather_object(shares, list(mine))
    return _unshard(shares)


def gather_to_main(mine: Sequence[T]) -> list[T]:
    """`gather_shards` for results only rank 0 writes: the whole ordered list on rank 0, an empty one elsewhere, so
    the other ranks never hold everyone's share (a styles dump of a million seeds is tens of GB)."""
    size = world_size()
    if size == 1:
        return list(mine)
    shares: list[list[T]] | None = [[] for _ in range(size)] if is_main() else None
    _arrive()
    dist.gather_object(list(mine), shares, dst=0)
    return [] if shares is None else _unshard(shares)


def _unshard(shares: list[list[T]]) -> list[T]:
    """Rank r's share (items r, r+K, ...) for every r, dealt back into one list in the original order."""
    size = len(shares)
    return [shares[i % size][i // size] for i in range(sum(len(share) for share in shares))]


def all_sum(array: Any) -> np.ndarray:
    """The element-wise sum over ranks of a float64 array (counts, sums, second moments), on every rank."""
    values = np.array(array, dtype=np.float64)
    if world_size() == 1:
        return values
    tensor = torch.from_numpy(values).to(_device())
    _arrive()
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def ordered_sum(count: int, term: Callable[[int], Any], per_round: int = 64) -> np.ndarray:
    """The float64 sum of `term(i)` over i < count with the bits of one process for any number of ranks: each rank
    computes the terms `shard` deals it, `per_round` of them between two gathers (so memory stays bounded), and
    every rank adds all the terms in the order of i. Needs count >= 1."""
    if count < 1:
        raise StylelensError('nothing to sum: no items')
    mine, block = shard(range(count)), per_round * world_size()
    total: np.ndarray | None = None
    for start in range(0, count, block):
        for part in gather_shards([np.asarray(term(i), dtype=np.float64) for i in mine if start <= i < start + block]):
            total = part.copy() if total is None else np.add(total, part, out=total)
    return total


def ordered_centred_sums(count: int, rows: Callable[[int], np.ndarray], term: Callable[[int, np.ndarray], Any],
                         total_rows: int, *, per_round: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The mean of the float64 rows of chunks 0..count-1 (chunk k's rows: rows(k), [n_k, D]; `total_rows` in all)
    and the sum over chunks of term(k, chunk k's rows minus that mean), both as `ordered_sum`s, so with one
    process's bits for any number of ranks. Each rank computes only the chunks `shard` deals it, once, and keeps
    them between the two passes; `per_round` bounds the second pass's gathers as in `ordered_sum`."""
    kept: dict[int, np.ndarray] = {}

    def chunk_sum(k: int) -> np.ndarray:
        """Compute chunk k, keep it for the second pass, return its sum."""
        kept[k] = rows(k)
        return kept[k].sum(axis=0)

    mean = ordered_sum(count, chunk_sum) / total_rows
    return mean, ordered_sum(count, lambda k: term(k, kept.pop(k) - mean), per_round=per_round)


def mean_and_scatter(rows: Any, chunk: int = 4096) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, mean and scatter matrix sum((x - mean)(x - mean)^T) in float64 of the [N, D] rows all ranks hold
    between them, each rank passing its own: the second moments behind FID's covariance and PCA, summed over ranks
    about the common mean (two all-reduces, then one of D x D), so no rank needs another's rows. Rows are made
    float64 `chunk` at a time, so a big float32 array never exists as a float64 copy."""
    x = np.asarray(rows)
    count = int(all_sum(len(x)))
    if x.ndim != 2 or count < 2:
        raise StylelensError(f'second moments need at least 2 rows [N, D], got shape {x.shape}')
    mean = all_sum(x.sum(axis=0, dtype=np.float64)) / count
    scatter = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, len(x), chunk):
        centred = x[start:start + chunk].astype(np.float64) - mean
        scatter += centred.T @ centred
    return count, mean, all_sum(scatter)


def from_main(compute: Callable[[], T]) -> T:
    """`compute()` run on rank 0 only and its result handed to every rank: decisions that must agree (is it cached,
    is this a resume) and files only rank 0 reads."""
    if world_size() == 1:
        return compute()
    box = [compute() if is_main() else None]
    _arrive()
    dist.broadcast_object_list(box, src=0)
    return box[0]


def in_turn(compute: Callable[[], T]) -> T:
    """`compute()` on rank 0 first, then on each node's first process, then on the rest: whatever the first ones
    download into the cache (networks, Inception weights) the later ones find there, so no two fetch one file."""
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    turn = 0 if is_main() else 1 if local_rank == 0 else 2
    result = None
    for step in range(3 if world_size() > 1 else 1):
        if step == turn:
            result = compute()
        barrier()
    return result


def barrier() -> None:
    """Wait until every rank gets here (e.g. before rank 0 writes the manifest over files the others wrote)."""
    _arrive()


@contextlib.contextmanager
def progress(total: int, label: str, enabled: bool = True, *,
             initial: int = 0) -> Iterator[Callable[[int], None]]:
    """A callback counting this rank's finished items; rank 0's bar on stderr shows all ranks' count together.

    Each update also looks for a failed rank, so the others stop within one item. Rank 0 redraws its bar while it
    waits at a barrier, and on leaving, ranks wait for each other, so the bar ends at the full count.
    """
    session = _session
    with progress_bar(total, label, enabled and is_main(), initial=initial) as bar:
        if session is None:
            yield bar.update
            return
        session.bars += 1
        key = f'progress/{session.bars}'

        def show(done: int) -> None:
            bar.update(initial + done - bar.n)

        def update(count: int) -> None:
            show(session.store.add(key, count))
            _check_peers(session)

        session.refresh = lambda: show(session.store.add(key, 0))
        try:
            yield update
            _arrive()
        finally:
            session.refresh = None


def claim_failure(message: str) -> str | None:
    """Record this rank's one-line error for the others; returns the line to print, or None when another rank
    recorded its error first (that rank prints, this one exits quietly)."""
    session = _session
    if session is None:
        return message
    line = f'rank {session.rank}: {message}'
    try:
        first = session.store.compare_set(_ERROR, '', line).decode()
    except (RuntimeError, OSError):  # the store is gone with its host: say it here
        return line
    return line if first == line else None


def _check_peers(session: _Session) -> None:
    """Raise PeerFailed once any rank has recorded an error."""
    if session.store.check([_ERROR]):
        raise PeerFailed(session.store.get(_ERROR).decode())


def _arrive() -> None:
    """The barrier before every collective: count this rank in at the next sync point and wait for all the others
    (redrawing an open progress bar); raise PeerFailed when a rank has failed, StylelensError after TIMEOUT_S."""
    session = _session
    if session is None:
        if dist.is_initialized():  # a process group the caller made: a plain barrier, without error watching
            dist.barrier()
        return
    session.syncs += 1
    key = f'sync/{session.syncs}'
    arrived = session.store.add(key, 1)
    deadline, pause = time.monotonic() + TIMEOUT_S, _POLL_S[0]
    while arrived < session.size:
        _check_peers(session)
        if session.refresh is not None:
            session.refresh()
        if time.monotonic() > deadline:
            raise StylelensError(f'waited {TIMEOUT_S} s for the other ranks at sync point {session.syncs}: '
                                 f'{session.size - arrived} of {session.size} never arrived')
        time.sleep(pause)
        pause = min(2 * pause, _POLL_S[1])
        arrived = session.store.add(key, 0)
    if session.refresh is not None:
        session.refresh()


def _device() -> torch.device:
    """Where collectives' tensors go: the rank's GPU when the group has NCCL, else the CPU (gloo)."""
    backend = dist.get_backend() if dist.is_initialized() else 'gloo'
    return torch.device('cuda', torch.cuda.current_device()) if 'nccl' in str(backend) else torch.device('cpu')
