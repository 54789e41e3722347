"""Verbs under `torchrun --nproc_per_node=K -m stylelens VERB`: join the process group, refuse verbs that do not
shard, and turn a failure on any rank into that rank's one line (the others exit quietly, non-zero)."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType

import click

from stylelens.errors import StylelensError

SHARDED_VERBS = ('activations', 'directions pca', 'directions sefa', 'directions supervised', 'generate', 'metrics',
                 'mix-study', 'styles', 'styles rank')


def launched() -> bool:
    """True in a process torchrun started with a world of more than one (it sets WORLD_SIZE)."""
    return int(os.environ.get('WORLD_SIZE', '1') or 1) > 1


def check_sharded(verb: str) -> None:
    """Under torchrun, only verbs that split their work by rank run: K copies of another verb would redo it all. A
    group (`directions`) passes here if some of its subcommands split theirs; it checks `directions SUB` itself."""
    if launched() and verb not in SHARDED_VERBS and not any(v.startswith(f'{verb} ') for v in SHARDED_VERBS):
        raise StylelensError(f'{verb} does not split its work over processes: run it without torchrun (verbs that '
                             f"do: {', '.join(SHARDED_VERBS)})")


@contextlib.contextmanager
def all_ranks() -> Iterator[None]:
    """Around one CLI call: outside torchrun nothing; under it, the process group for the call's lifetime and one
    line for the first failure of any rank (torch.distributed is imported only then: it is heavy)."""
    if not launched():
        yield
        return
    from stylelens import distributed

    try:
        distributed.start()
        yield
        distributed.stop()
    except distributed.PeerFailed:
        distributed.stop(wait=False)
        raise SystemExit(1) from None
    except click.exceptions.Exit:
        raise
    except click.ClickException as err:
        _fail(distributed, err.format_message())
    except Exception as err:  # any failure on one rank must reach the others, as one line
        _fail(distributed, str(err) if isinstance(err, StylelensError) else f'{type(err).__name__}: {err}')


def _fail(distributed: ModuleType, message: str) -> None:
    """Record the error for the other ranks; print it here only if this rank's error was the first."""
    line = distributed.claim_failure(' '.join(message.split()))
    distributed.stop(wait=False)
    if line is None:
        raise SystemExit(1)
    raise click.ClickException(line)
