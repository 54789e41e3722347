"""Damaged files of every network format: truncated anywhere or with bytes flipped, they load or are refused in
one line (a StylelensError) and never raise anything else, never print a traceback, and never run code."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import stylelens
from conftest import ORACLE_DIR

FILES = ['sg2_cond32.pkl', 'sg3r_32.pkl', 'tf_sg2_cond32.pkl', 'ros_32.pt', 'ros_32.conv.legacy.pt']
MUTATIONS = 12


def original(name: str) -> bytes:
    """The bytes of an oracle fixture; skip without the oracle directory."""
    path = ORACLE_DIR / name
    if not path.is_file():
        pytest.skip(f'oracle fixture {path} not found (set STYLELENS_ORACLE_DIR)')
    return path.read_bytes()


def load_or_refuse(path: Path) -> None:
    """Load the generator; a refusal must be one StylelensError line, anything else fails the test."""
    try:
        stylelens.load_generator(path, progress=False)
    except stylelens.StylelensError as error:
        assert '\n' not in str(error).strip() and str(error).strip(), repr(error)


@pytest.mark.parametrize('name', FILES)
def test_truncated_anywhere(tmp_path, name):
    data = original(name)
    path = tmp_path / name
    for cut in sorted({1, 16, 100, len(data) // 3, len(data) // 2, len(data) - 1}):
        path.write_bytes(data[:cut])
        with pytest.raises(stylelens.StylelensError) as err:
            stylelens.load_generator(path, progress=False)
        assert '\n' not in str(err.value).strip(), f'cut at {cut}: {err.value!r}'


@pytest.mark.parametrize('name', FILES)
def test_flipped_bytes(tmp_path, name):
    data = np.frombuffer(original(name), np.uint8)
    rng = np.random.RandomState(sum(map(ord, name)))
    path = tmp_path / name
    for _ in range(MUTATIONS):
        mutated = data.copy()
        where = rng.randint(0, len(data), size=rng.randint(1, 8))
        mutated[where] = rng.randint(0, 256, size=len(where))
        path.write_bytes(mutated.tobytes())
        load_or_refuse(path)
