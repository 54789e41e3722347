"""Output conventions: the official uint8 conversion, PNGs, atomic writes, manifests, output folders."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ORACLE_DIR, REPO
from stylelens.errors import StylelensError
from stylelens.outputs import (
    MANIFEST_NAME,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    ensure_outdir,
    save_npz,
    save_png,
    seed_filename,
    to_uint8,
    write_manifest,
)


def official_uint8(img: torch.Tensor) -> np.ndarray:
    """The conversion exactly as the official scripts write it."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def boundary_values(dtype: type) -> np.ndarray:
    """Values whose scaled form sits on, just above and just below every integer and half-integer, plus extremes."""
    grid = (np.arange(-4, 264, 0.5) - 128) / 127.5
    special = [0.99999, -0.99999, -1.0, 1.0, 1.00001, -1.00001, 0.0, -0.0, 5.0, -5.0, 1e-8, 1 / 255]
    base = np.concatenate([grid, special]).astype(dtype)
    return np.concatenate([base, np.nextafter(base, dtype(2)), np.nextafter(base, dtype(-2))])


def as_batch(values: np.ndarray, channels: int = 3) -> np.ndarray:
    """Lay flat values out as an NCHW batch [2, channels, 1, W] so the permute matters."""
    n = len(values) // (2 * channels) * 2 * channels
    return values[:n].reshape(2, channels, 1, -1)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_to_uint8_numpy_and_torch_are_bit_identical(dtype: type) -> None:
    uniform = np.random.default_rng(0).uniform(-1.1, 1.1, 60000)
    x = as_batch(np.concatenate([boundary_values(dtype), uniform]).astype(dtype))
    from_numpy, from_torch = to_uint8(x), to_uint8(torch.from_numpy(x))
    assert from_numpy.dtype == from_torch.dtype == np.uint8
    assert from_numpy.shape == (2, 1, x.shape[3], 3)
    np.testing.assert_array_equal(from_numpy, from_torch)
    np.testing.assert_array_equal(from_numpy, official_uint8(torch.from_numpy(x)))


def test_to_uint8_half_precision_is_computed_in_float32() -> None:
    x = as_batch(boundary_values(np.float16))
    expected = official_uint8(torch.from_numpy(x.astype(np.float32)))
    np.testing.assert_array_equal(to_uint8(x), expected)
    np.testing.assert_array_equal(to_uint8(torch.from_numpy(x)), expected)


def test_to_uint8_known_values() -> None:
    x = np.array([-5.0, -1.0, 0.0, 0.99999, 1.0, 5.0, -0.99999, (1.5 - 128) / 127.5], np.float32).reshape(1, 1, 1, -1)
    assert to_uint8(x).ravel().tolist() == [0, 0, 128, 255, 255, 255, 0, 1]
    assert to_uint8(torch.from_numpy(x)).ravel().tolist() == [0, 0, 128, 255, 255, 255, 0, 1]


def test_to_uint8_matches_oracle() -> None:
    path = ORACLE_DIR / 'sg2_uncond64.ref.npz'
    if not path.is_file():
        pytest.skip(f'oracle fixture {path} not found (set STYLELENS_ORACLE_DIR to the shared oracle directory)')
    with np.load(path) as ref:
        grid, expected = ref['mix_grid'], ref['mix_grid_uint8']
    images = grid.reshape(-1, *grid.shape[2:])
    np.testing.assert_array_equal(to_uint8(images), expected.reshape(-1, *expected.shape[2:]))
    np.testing.assert_array_equal(to_uint8(torch.from_numpy(images)), expected.reshape(-1, *expected.shape[2:]))


@pytest.mark.parametrize(
    ('image', 'needle'),
    [(np.zeros((3, 4, 4)), r'shape \(3, 4, 4\).*\[N, C, H, W\]'), (np.zeros((1, 3, 4, 4), np.uint8), 'dtype .*uint8')],
)
def test_to_uint8_rejects_non_float_batches(image: np.ndarray, needle: str) -> None:
    for value in (image, torch.from_numpy(image)):
        with pytest.raises(StylelensError, match=needle):
            to_uint8(value)


def entries(folder: Path) -> list[str]:
    """Names in a folder, hidden temp files included."""
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(('shape', 'mode'), [((5, 7, 1), 'L'), ((5, 7), 'L'), ((5, 7, 3), 'RGB'), ((5, 7, 4), 'RGBA')])
def test_save_png_round_trip(tmp_path: Path, shape: tuple[int, ...], mode: str) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    path = save_png(pixels, tmp_path / 'img.png')
    assert entries(tmp_path) == ['img.png']
    with Image.open(path) as loaded:
        assert loaded.format == 'PNG' and loaded.mode == mode
        np.testing.assert_array_equal(np.asarray(loaded), pixels.reshape(loaded.height, loaded.width, -1).squeeze())


@pytest.mark.parametrize(
    ('image', 'needle'),
    [
        (np.zeros((4, 4, 2), np.uint8), 'C = 1, 3 or 4'),
        (np.zeros((1, 4, 4, 3), np.uint8), 'C = 1, 3 or 4'),
        (np.zeros((4, 4, 3)), 'dtype float64'),
    ],
)
def test_save_png_rejects_bad_images(tmp_path: Path, image: np.ndarray, needle: str) -> None:
    with pytest.raises(StylelensError, match=needle):
        save_png(image, tmp_path / 'bad.png')
    assert entries(tmp_path) == []


def test_atomic_path_replaces_target_on_success(tmp_path: Path) -> None:
    target = tmp_path / 'out.npz'
    target.write_text('old')
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == '.npz' and tmp != target
        tmp.write_text('new')
        assert target.read_text() == 'old'
    assert target.read_text() == 'new'
    assert entries(tmp_path) == ['out.npz']


@pytest.mark.parametrize('existing', [False, True])
def test_atomic_path_leaves_nothing_on_error(tmp_path: Path, existing: bool) -> None:
    target = tmp_path / 'out.png'
    if existing:
        target.write_text('old')
    with pytest.raises(RuntimeError, match='writer failed'), atomic_path(target) as tmp:
        tmp.write_text('partial')
        raise RuntimeError('writer failed')
    assert entries(tmp_path) == (['out.png'] if existing else [])
    if existing:
        assert target.read_text() == 'old'


def test_atomic_writes(tmp_path: Path) -> None:
    assert atomic_write_text(tmp_path / 'a.txt', 'héllo\n').read_text(encoding='utf-8') == 'héllo\n'
    assert atomic_write_bytes(tmp_path / 'b.bin', b'\x00\x01').read_bytes() == b'\x00\x01'
    assert entries(tmp_path) == ['a.txt', 'b.bin']


def test_save_npz_writes_exactly_the_given_path(tmp_path: Path) -> None:
    path = save_npz(tmp_path / 'arrays.data', a=np.arange(3), b=np.ones((2, 2), np.float32))
    assert entries(tmp_path) == ['arrays.data']
    with np.load(path) as loaded:
        assert loaded['a'].tolist() == [0, 1, 2] and loaded['b'].dtype == np.float32


def test_write_manifest(tmp_path: Path) -> None:
    options = {
        'outdir': tmp_path,
        'seeds': (0, 1),
        'psi': np.float32(0.5),
        'count': np.int64(3),
        'nested': {'b': float('nan'), 'a': [Path('x')]},
        'flag': np.bool_(True),
        'none': None,
    }
    network = {'source': 'oracle', 'path': tmp_path / 'net.pkl', 'sha256': 'ab' * 32}
    path = write_manifest(tmp_path, command='generate', options=options, network=network, extra={'images': 2})
    assert path == tmp_path / MANIFEST_NAME and entries(tmp_path) == [MANIFEST_NAME]
    manifest = json.loads(path.read_text())
    assert manifest['tool']['name'] == 'stylelens' and manifest['tool']['version']
    utc = datetime.timezone.utc
    created = datetime.datetime.strptime(manifest['created_utc'], '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=utc)
    assert abs((datetime.datetime.now(utc) - created).total_seconds()) < 60
    assert manifest['command'] == 'generate' and manifest['argv'] == sys.argv
    assert manifest['options'] == {
        'count': 3, 'flag': True, 'nested': {'a': ['x'], 'b': 'nan'}, 'none': None,
        'outdir': str(tmp_path), 'psi': 0.5, 'seeds': [0, 1],
    }
    assert list(manifest['options']) == sorted(manifest['options'])
    assert manifest['network'] == {'path': str(tmp_path / 'net.pkl'), 'sha256': 'ab' * 32, 'source': 'oracle'}
    assert manifest['extra'] == {'images': 2}
    env = manifest['environment']
    assert env['torch'] == torch.__version__ and env['numpy'] == np.__version__
    assert env['python'] == '.'.join(map(str, sys.version_info[:3])) and env['pillow'] and env['platform']


def test_write_manifest_without_network(tmp_path: Path) -> None:
    manifest = json.loads(write_manifest(tmp_path, command='weights', options={}).read_text())
    assert manifest['network'] is None and manifest['extra'] == {}


def test_seed_filename() -> None:
    assert seed_filename(0) == 'seed0000.png'
    assert seed_filename(42) == 'seed0042.png'
    assert seed_filename(123456) == 'seed123456.png'


def test_ensure_outdir(tmp_path: Path) -> None:
    nested = tmp_path / 'a' / 'b'
    assert ensure_outdir(nested) == nested and nested.is_dir()
    assert ensure_outdir(str(nested)) == nested
    (tmp_path / 'file').write_text('x')
    with pytest.raises(StylelensError, match='is an existing file'):
        ensure_outdir(tmp_path / 'file')
    with pytest.raises(StylelensError, match='cannot create output directory'):
        ensure_outdir(tmp_path / 'file' / 'sub')


def test_outputs_import_does_not_load_torch() -> None:
    probe = "import sys, importlib; importlib.import_module(sys.argv[1]); print('torch' in sys.modules)"
    env = {**os.environ, 'PYTHONPATH': str(REPO)}

    def loads_torch(module: str) -> bool:
        command = [sys.executable, '-c', probe, module]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout.strip() == 'True'

    if loads_torch('stylelens'):
        pytest.skip('the stylelens package itself imports torch, so outputs.py cannot be checked on its own')
    assert not loads_torch('stylelens.outputs')
