"""`stylelens activations` through the real console script (demo network and oracle), and D parity in Python."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylelens
from stylelens.activations import check_batch_for_mbstd, dump_discriminator_activations
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws

ATOL = 1e-4
DEMO_BLOCKS = {'b4': 4, 'b8': 8, 'b16': 16, 'b32': 32}  # the demo G's blocks and their resolutions
DEMO_G_CHANNELS = {'b4': 64, 'b8': 64, 'b16': 64, 'b32': 32}  # the demo G's block output channels
ORACLE_BLOCKS = {'b4': 4, 'b8': 8, 'b16': 16, 'b32': 32, 'b64': 64}  # sg2_uncond64's blocks


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['stylelens', 'activations', *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        return image.size


@pytest.fixture(scope='module')
def demo() -> dict:
    return stylelens.load_network('demo')


@pytest.fixture(scope='module')
def g_run(tmp_path_factory) -> Path:
    """`activations --seeds 0,1 --layers b32.conv1` on the demo network (all blocks by default)."""
    cwd = tmp_path_factory.mktemp('g_run')
    result = run_cli(cwd, '--seeds', '0,1', '--layers', 'b32.conv1', '--outdir', 'out')
    assert result.returncode == 0, result.stderr
    return cwd / 'out'


def test_g_files_and_shapes(g_run):
    for seed in ('seed0000', 'seed0001'):
        folder = g_run / seed
        for block, res in DEMO_BLOCKS.items():
            with np.load(folder / f'{block}.npz') as arrays:
                assert arrays['x'].shape == (1, DEMO_G_CHANNELS[block], res, res)
                assert arrays['img'].shape == (1, 3, res, res)
            assert png_size(folder / f'{block}_rgb.png') == (res, res)
            assert png_size(folder / f'{block}_rgb_full.png') == (32, 32)
            assert png_size(folder / f'{block}_channels.png')
        with np.load(folder / 'b32.conv1.npz') as arrays:
            assert arrays['out'].shape == (1, 32, 32, 32)
        assert png_size(folder / 'overview.png')
    manifest = json.loads((g_run / 'manifest.json').read_text())
    assert manifest['command'] == 'activations' and manifest['options']['seeds'] == [0, 1]
    assert manifest['options']['blocks'] == list(DEMO_BLOCKS)
    assert manifest['options']['layers'] == ['synthesis.b32.conv1']
    assert manifest['network']['sha256'] and 'seed0001/overview.png' in manifest['extra']['files']
    assert all((g_run / f).is_file() for f in manifest['extra']['files'])


def test_g_last_block_is_the_image(g_run, demo):
    """b32's `img` (the last block's) is the generated image, and its RGB PNGs use the official uint8 conversion."""
    G = demo['G_ema']
    image = G.synthesis(seeds_to_ws(G, [1]), noise_mode='const')
    with np.load(g_run / 'seed0001' / 'b32.npz') as arrays:
        np.testing.assert_allclose(arrays['img'], image.numpy(), rtol=0, atol=1e-5)
    with Image.open(g_run / 'seed0001' / 'b32_rgb.png') as png:
        expected = (image.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
        assert np.abs(np.asarray(png).astype(int) - expected.astype(int)).max() <= 1


def test_float16_halves_npz_and_blocks_select(g_run, tmp_path):
    result = run_cli(tmp_path, '--seeds', '0', '--blocks', 'b32', '--dtype', 'float16', '--no-pngs', '--outdir', 'h')
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / 'h' / 'seed0000').iterdir()) == ['b32.npz']
    half, full = tmp_path / 'h' / 'seed0000' / 'b32.npz', g_run / 'seed0000' / 'b32.npz'
    with np.load(half) as h, np.load(full) as f:
        assert h['x'].dtype == np.float16
        np.testing.assert_allclose(h['x'].astype(np.float32), f['x'], rtol=1e-3, atol=1e-3)
    assert half.stat().st_size < 0.52 * full.stat().st_size


def test_unknown_block_lists_blocks(tmp_path):
    result = run_cli(tmp_path, '--seeds', '0', '--blocks', 'b4,b64', '--outdir', 'x')
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'b64'" in lines[0] and 'b4, b8, b16, b32, or all' in lines[0], result.stderr
    assert not (tmp_path / 'x').exists()


def test_discriminator_cli_files(g_run, tmp_path):
    """Two image files (one 32x32, one 16x16 resized to D's 32x32) through D as one batch."""
    Image.open(g_run / 'seed0000' / 'b32_rgb_full.png').save(tmp_path / 'a.png')
    Image.open(g_run / 'seed0001' / 'b16_rgb.png').save(tmp_path / 'b.png')
    assert (png_size(tmp_path / 'a.png'), png_size(tmp_path / 'b.png')) == ((32, 32), (16, 16))
    result = run_cli(tmp_path, '--part', 'D', '--images', 'a.png,b.png', '--outdir', 'd')
    assert result.returncode == 0, result.stderr
    for image in ('image0', 'image1'):
        folder = tmp_path / 'd' / image
        for block, res in DEMO_BLOCKS.items():
            if block != 'b4':
                with np.load(folder / f'{block}.npz') as arrays:
                    assert arrays['x'].shape == (1, 64, res // 2, res // 2)
                assert png_size(folder / f'{block}_channels.png')
        with np.load(folder / 'b4.npz') as arrays:
            assert arrays['logits'].shape == (1, 1)
    manifest = json.loads((tmp_path / 'd' / 'manifest.json').read_text())
    assert manifest['options']['part'] == 'D' and manifest['options']['images'] == ['a.png', 'b.png']


def test_oracle_generator_blocks_and_layers(oracle_dir, tmp_path):
    result = run_cli(tmp_path, '--network', str(oracle_dir / 'sg2_uncond64.pkl'), '--seeds', '0', '--blocks', 'all',
                     '--layers', 'b8.conv0,b64.torgb', '--outdir', 'out')
    assert result.returncode == 0, result.stderr
    ref, folder = np.load(oracle_dir / 'sg2_uncond64.ref.npz'), tmp_path / 'out' / 'seed0000'
    for res in ORACLE_BLOCKS.values():
        with np.load(folder / f'b{res}.npz') as arrays:
            np.testing.assert_allclose(arrays['x'], ref[f'block.b{res}.x'], rtol=0, atol=ATOL)
            np.testing.assert_allclose(arrays['img'], ref[f'block.b{res}.img'], rtol=0, atol=ATOL)
    for layer in ('b8.conv0', 'b64.torgb'):
        with np.load(folder / f'{layer}.npz') as arrays:
            np.testing.assert_allclose(arrays['out'], ref[f'layer.{layer}'], rtol=0, atol=ATOL)


def test_oracle_discriminator_blocks(oracle_dir, tmp_path):
    """The oracle's 4 float images as one batch (minibatch-std mixes them); sample 0 against `dblock.*`."""
    ref = np.load(oracle_dir / 'sg2_uncond64.ref.npz')
    D = stylelens.load_network(oracle_dir / 'sg2_uncond64.pkl')['D']
    dump_discriminator_activations(D, torch.from_numpy(ref['img_const_psi1']), tmp_path, pngs=False)
    for res in (64, 32, 16, 8):
        with np.load(tmp_path / 'image0' / f'b{res}.npz') as arrays:
            np.testing.assert_allclose(arrays['x'], ref[f'dblock.b{res}'], rtol=0, atol=ATOL)
    for i in range(4):
        with np.load(tmp_path / f'image{i}' / 'b4.npz') as arrays:
            np.testing.assert_allclose(arrays['logits'], ref['d_logits'][i:i + 1], rtol=0, atol=ATOL)


def test_minibatch_std_group_check(demo):
    check_batch_for_mbstd(demo['D'], 8)
    check_batch_for_mbstd(demo['D'], 3)
    with pytest.raises(StylelensError, match='groups of 4.*got 5'):
        check_batch_for_mbstd(demo['D'], 5)
