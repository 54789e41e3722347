"""One output file and its siblings for the analysis verbs: checked before any work, a manifest written beside."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stylelens.cli.loaded import LoadedNetwork
from stylelens.errors import StylelensError
from stylelens.outputs import ensure_outdir, write_manifest


def check_out(path: str | Path, suffixes: tuple[str, ...], option: str = '--out') -> Path:
    """`path` if its suffix is one of `suffixes` and it is not a directory; else a one-line error. Creates nothing."""
    target = Path(path)
    if target.suffix.lower() not in suffixes:
        raise StylelensError(f"bad {option} '{target}': expected a {' or '.join(suffixes)} file")
    if target.is_dir():
        raise StylelensError(f"bad {option} '{target}': it is a directory; pass a file name")
    if target.parent.exists() and not target.parent.is_dir():
        raise StylelensError(f"bad {option} '{target}': its folder '{target.parent}' is a file")
    return target


def sibling(target: Path, suffix: str) -> Path:
    """`out/patch.png` -> `out/patch{suffix}` (e.g. '.csv', '.npz')."""
    return target.with_name(f'{target.stem}{suffix}')


def prepare(target: Path) -> Path:
    """Create the output's folder (call once the inputs are checked)."""
    ensure_outdir(target.parent)
    return target


def manifest_beside(target: Path, *, command: str, options: dict, loaded: LoadedNetwork,
                    extra: dict[str, Any] | None = None) -> Path:
    """`<stem>.manifest.json` beside `target`: the command, its options, the network and what was written."""
    return write_manifest(target.parent, command=command, options=options, network=loaded.manifest(), extra=extra,
                          name=f'{target.stem}.manifest.json')
