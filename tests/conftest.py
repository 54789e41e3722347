"""Shared fixtures: where the oracle lives."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def oracle_dir() -> Path:
    """The official-output fixtures (env STYLELENS_ORACLE_DIR, default ../shared/oracle); skip if absent."""
    path = Path(os.environ.get('STYLELENS_ORACLE_DIR', REPO.parent / 'shared' / 'oracle'))
    if not (path / 'README.md').is_file():
        pytest.skip(f'oracle fixtures not found at {path} (set STYLELENS_ORACLE_DIR to the shared oracle directory)')
    return path
