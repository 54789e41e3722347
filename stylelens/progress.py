"""The one progress bar: tqdm on stderr (what this field's users know), silent when disabled or for tiny jobs."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(total: int | None, label: str, enabled: bool = True, *, initial: int = 0,
                 unit: str = 'it', unit_scale: bool = False) -> tqdm:
    """A context-managed bar of `total` steps on stderr labelled `label`, already at `initial`; `update(n)` advances
    it and `set_description` relabels it. With `enabled` False it counts silently, so callers need no branch."""
    return tqdm(total=total, desc=label, initial=initial, unit=unit, unit_scale=unit_scale, file=sys.stderr,
                disable=not enabled, dynamic_ncols=True, leave=True)
