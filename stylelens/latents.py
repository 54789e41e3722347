"""Latent conventions in one place: seed lists, seed → z, class labels → c, and W files (.npy/.npz)."""

from __future__ import annotations

import difflib
import json
import numbers
import operator
import os
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stylelens.errors import StylelensError
from stylelens.outputs import save_npz, to_jsonable

MAX_SEED = 2**32 - 1
MAX_LIST_ITEMS = 1_000_000
_LIST_ITEM = re.compile(r'([0-9]+)(?:\s*-\s*([0-9]+))?', re.ASCII)
_LIST_HINT = 'expected comma-separated non-negative integers and ranges like 0-7,12'
_SHOWN_CLASSES = 12


def parse_int_list(text: str, *, what: str = 'seeds') -> list[int]:
    """Parse the official CLI list idiom `0-7,12`: inclusive ranges and single integers, in the order given."""
    if not text.strip():
        raise StylelensError(f"bad --{what} '{text}': {_LIST_HINT}")
    values: list[int] = []
    for item in text.split(','):
        values.extend(_parse_list_item(item.strip(), text, what))
        if len(values) > MAX_LIST_ITEMS:
            raise StylelensError(f"bad --{what} '{text}': more than {MAX_LIST_ITEMS} values; {_LIST_HINT}")
    return values


def _parse_list_item(item: str, text: str, what: str) -> range:
    """One comma-separated item: `12` or `0-7`."""
    if not item:
        raise StylelensError(f"bad --{what} '{text}': empty item; {_LIST_HINT}")
    match = _LIST_ITEM.fullmatch(item)
    if match is None:
        raise StylelensError(f"bad --{what} '{item}': {_LIST_HINT}")
    start = int(match.group(1))
    stop = int(match.group(2)) if match.group(2) is not None else start
    if stop < start:
        raise StylelensError(f"bad --{what} '{item}': range end is below its start; {_LIST_HINT}")
    if stop - start >= MAX_LIST_ITEMS:
        raise StylelensError(f"bad --{what} '{item}': more than {MAX_LIST_ITEMS} values; {_LIST_HINT}")
    return range(start, stop + 1)


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    """The official generate.py latent for a seed: float64 `RandomState(seed).randn(1, z_dim)`."""
    if not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise StylelensError(f'bad seed {seed!r}: seeds are integers in 0..{MAX_SEED}')
    return np.random.RandomState(int(seed)).randn(1, z_dim)


def seeds_to_z(seeds: Iterable[int], z_dim: int) -> np.ndarray:
    """Stack per-seed latents into [N, z_dim] float64; each seed has its own generator, so batching changes nothing."""
    rows = [seed_to_z(seed, z_dim) for seed in seeds]
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, z_dim), dtype=np.float64)


def class_to_c(
    class_idx: int | str | None,
    c_dim: int,
    batch: int,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Labels for a batch: one-hot [batch, c_dim] float32, or the empty [batch, 0] an unconditional network takes."""
    if c_dim == 0:
        if class_idx is not None:
            raise StylelensError(f'this network is unconditional (c_dim=0): drop --class (got {class_idx!r})')
        return np.zeros((batch, 0), dtype=np.float32)
    if class_idx is None:
        choices = _class_choices(c_dim, class_names)
        raise StylelensError(f'this network is conditional (c_dim={c_dim}): pass --class with one of {choices}')
    if isinstance(class_idx, str):
        index = resolve_class(class_idx, c_dim, class_names)
    else:
        index = operator.index(class_idx)
        _check_class_range(index, c_dim, class_names)
    c = np.zeros((batch, c_dim), dtype=np.float32)
    c[:, index] = 1
    return c


def resolve_class(value: str, c_dim: int, class_names: Sequence[str] | None = None) -> int:
    """Turn a --class value, an index like `3` or a name like `dog`, into a class index, suggesting near misses."""
    if c_dim == 0:
        raise StylelensError(f"this network is unconditional (c_dim=0): drop --class (got '{value}')")
    text = value.strip()
    if re.fullmatch(r'-?[0-9]+', text, re.ASCII):
        index = int(text)
        _check_class_range(index, c_dim, class_names)
        return index
    if not class_names:
        raise StylelensError(f"bad --class '{value}': this network has no class names; pass an index 0..{c_dim - 1}")
    lowered = [name.lower() for name in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = difflib.get_close_matches(text.lower(), lowered, n=1)
    hint = f"did you mean '{class_names[lowered.index(close[0])]}'? " if close else ''
    raise StylelensError(f"unknown --class '{value}': {hint}choose one of {_class_choices(c_dim, class_names)}")


def _check_class_range(index: int, c_dim: int, class_names: Sequence[str] | None) -> None:
    """Reject class indices outside 0..c_dim-1."""
    if not 0 <= index < c_dim:
        raise StylelensError(
            f'--class {index} is out of range: this network has classes {_class_choices(c_dim, class_names)}'
        )


def _class_choices(c_dim: int, class_names: Sequence[str] | None) -> str:
    """`0..9`, followed by `(0=airplane, 1=automobile, ...)` when names are known (long lists shortened)."""
    choices = f'0..{c_dim - 1}'
    if not class_names:
        return choices
    named = [f'{i}={name}' for i, name in enumerate(class_names)]
    if len(named) > _SHOWN_CLASSES:
        named = named[: _SHOWN_CLASSES - 1] + ['...', named[-1]]
    return f"{choices} ({', '.join(named)})"


def load_ws_file(path: str | os.PathLike, *, w_dim: int, num_ws: int) -> np.ndarray:
    """Read W latents from .npy or .npz (key `w` or `ws`, else the only array) as [N, num_ws, w_dim] float32.

    Accepts [w_dim], [N, w_dim] (repeated over all num_ws) and [N, num_ws, w_dim], as projector.py writes.
    """
    source = Path(path)
    raw = _read_ws_array(source)
    array = _broadcast_ws(raw, w_dim, num_ws)
    if array is None or array.shape[0] == 0:
        accepted = f'[{w_dim}], [N, {w_dim}] or [N, {num_ws}, {w_dim}]'
        raise StylelensError(
            f"W file '{source}' holds shape {list(raw.shape)}: expected {accepted} for this network"
            f' (w_dim={w_dim}, num_ws={num_ws})'
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise StylelensError(f"W file '{source}' holds dtype {array.dtype}: expected floating-point latents")
    if not np.isfinite(array).all():
        raise StylelensError(f"W file '{source}' contains NaN or infinite values: expected finite latents")
    return np.ascontiguousarray(array, dtype=np.float32)


def _broadcast_ws(array: np.ndarray, w_dim: int, num_ws: int) -> np.ndarray | None:
    """[w_dim], [N, w_dim] or [N, num_ws, w_dim] as [N, num_ws, w_dim]; None for any other shape."""
    if array.shape == (w_dim,):
        array = array[np.newaxis]
    if array.ndim == 2 and array.shape[1] == w_dim:
        return np.repeat(array[:, np.newaxis, :], num_ws, axis=1)
    return array if array.ndim == 3 and array.shape[1:] == (num_ws, w_dim) else None


def _read_ws_array(source: Path) -> np.ndarray:
    """Load the latent array from a .npy file or pick it out of a .npz archive, without unpickling anything."""
    if not source.is_file():
        raise StylelensError(f"W file '{source}' not found: pass an existing .npy or .npz file")
    try:
        loaded = np.load(source, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return loaded[_pick_ws_key(source, loaded.files)]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StylelensError(f"cannot read W file '{source}': {reason}; expected a .npy or .npz file") from None


def _pick_ws_key(source: Path, keys: list[str]) -> str:
    """`w`, then `ws`, then the only array; anything else is ambiguous."""
    for key in ('w', 'ws'):
        if key in keys:
            return key
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise StylelensError(f"W file '{source}' holds no arrays: expected an array under key 'w'")
    raise StylelensError(
        f"W file '{source}' has arrays {', '.join(keys)} and none named 'w' or 'ws': save the latents under key 'w'"
    )


def save_ws_file(path: str | os.PathLike, ws: Any, **meta: Any) -> Path:
    """Write W latents [N, num_ws, w_dim] to .npz under key `w` (as projector.py does), atomically; `meta` adds keys.

    Meta values that numpy stores natively (numbers, strings, numeric lists) become arrays; others become JSON strings.
    """
    if 'w' in meta:
        raise ValueError("save_ws_file: 'w' is reserved for the latents")
    array = np.asarray(ws.detach().cpu() if hasattr(ws, 'detach') else ws, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f'save_ws_file: expected ws of shape [N, num_ws, w_dim], got {list(array.shape)}')
    return save_npz(path, w=array, **{key: _meta_array(value) for key, value in meta.items()})


def _meta_array(value: Any) -> np.ndarray:
    """A metadata value as an array numpy can load without pickle."""
    plain = to_jsonable(value)
    try:
        array = np.asarray(plain)
    except ValueError:
        array = None
    if array is None or array.dtype == object:
        return np.asarray(json.dumps(plain))
    return array
