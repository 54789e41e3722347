"""`stylelens weights` through the real console script on the embedded demo network, plus the functions behind it."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylelens
from stylelens.errors import StylelensError
from stylelens.weights import describe, layer_tensors, pick_tensor, shape_line, tensor_stats


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['stylelens', 'weights', *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('Error: '), result.stderr
    return lines[0]


@pytest.fixture(scope='module')
def demo() -> dict:
    return stylelens.load_network('demo')


def same_bits(array: np.ndarray, tensor: torch.Tensor) -> bool:
    expected = tensor.detach().cpu().numpy()
    return array.dtype == expected.dtype and array.shape == expected.shape and array.tobytes() == expected.tobytes()


def test_layer_to_npy_and_png_with_manifest(tmp_path, demo):
    result = run_cli(tmp_path, '--layer', 'b32.conv1', '--out', 'w.npy', '--png', 'w.png')
    assert result.returncode == 0, result.stderr
    assert 'synthesis.b32.conv1.weight' in result.stdout
    assert 'Feature map size is (32, 32, 3, 3)' in result.stdout
    assert 'near zero (|x| < 1e-3 * max|x|' in result.stdout
    assert same_bits(np.load(tmp_path / 'w.npy'), demo['G_ema'].synthesis.b32.conv1.weight)
    with Image.open(tmp_path / 'w.png') as image:
        image.verify()
    manifest = json.loads((tmp_path / 'w.manifest.json').read_text())
    assert manifest['command'] == 'weights'
    assert manifest['extra']['files'] == ['w.npy', 'w.png']
    assert manifest['network']['name'] == 'demo' and manifest['network']['sha256']
    assert not list(tmp_path.glob('.*'))


def test_all_tensors_bit_for_bit_with_index(tmp_path, demo):
    result = run_cli(tmp_path, '--all', '--out', 'dump/all.npz')
    assert result.returncode == 0, result.stderr
    state = demo['G_ema'].state_dict()
    with np.load(tmp_path / 'dump' / 'all.npz') as dump:
        assert sorted(dump.files) == sorted(state)
        assert all(same_bits(dump[name], t) for name, t in state.items())
    index = json.loads((tmp_path / 'dump' / 'all.index.json').read_text())
    assert [t['name'] for t in index['tensors']] == list(state)
    assert all(t['shape'] == list(state[t['name']].shape) and t['dtype'] == 'float32' for t in index['tensors'])
    assert {t['kind'] for t in index['tensors']} == {'parameter', 'buffer'}
    assert (tmp_path / 'dump' / 'all.manifest.json').is_file()


def test_discriminator_param_printed_in_full(tmp_path, demo):
    result = run_cli(tmp_path, '--part', 'D', '--layer', 'b32.conv1', '--param', 'bias', '--print', '--out', 'b.npz')
    assert result.returncode == 0, result.stderr
    assert 'Vector size is (64,)' in result.stdout and '...' not in result.stdout
    with np.load(tmp_path / 'b.npz') as saved:
        assert same_bits(saved['bias'], demo['D'].b32.conv1.bias)


def test_unknown_layer_names_close_matches(tmp_path):
    line = assert_one_line_error(run_cli(tmp_path, '--layer', 'b32.conv9', '--png', 'plots/w.png'))
    assert 'b32.conv9' in line and 'close matches' in line and 'synthesis.b32.conv1' in line
    assert not (tmp_path / 'plots').exists(), 'bad input must leave no output folder behind'


def test_unknown_param_lists_the_layers_tensors(tmp_path):
    line = assert_one_line_error(run_cli(tmp_path, '--layer', 'synthesis.b32.conv1', '--param', 'gamma'))
    assert "'gamma'" in line and 'weight, noise_strength, bias' in line


def test_layer_tensors_and_pick(demo):
    tensors = layer_tensors(demo['G_ema'], 'b4')
    assert set(tensors) == {'const', 'resample_filter'}
    assert pick_tensor(tensors, 'synthesis.b4', None) is None
    assert pick_tensor(layer_tensors(demo['G_ema'], 'mapping.fc0'), 'mapping.fc0', None) == 'weight'
    with pytest.raises(StylelensError, match='its tensors: const, resample_filter'):
        pick_tensor(tensors, 'synthesis.b4', 'weight')


def test_stats_and_description():
    t = torch.tensor([[-2.0, 0.0], [1e-4, 1.0]])
    stats = tensor_stats(t)
    assert stats['shape'] == [2, 2] and stats['numel'] == 4 and stats['min'] == -2 and stats['max'] == 1
    assert stats['near_zero_threshold'] == pytest.approx(2e-3)
    assert stats['near_zero_fraction'] == 0.5
    assert stats['l2_norm'] == pytest.approx(np.sqrt(5 + 1e-8))
    assert shape_line((32, 32, 3, 3)) == 'Feature map size is (32, 32, 3, 3)'
    assert shape_line((64, 128)) == 'Matrix size is (64, 128)'
    assert shape_line((64,)) == 'Vector size is (64,)'
    assert shape_line(()) == 'Scalar size is ()'
    summary, full = describe('big', torch.zeros(64, 64, 3, 3)), describe('big', torch.zeros(64, 64, 3, 3), full=True)
    assert '...' in summary and '...' not in full and len(summary) < len(full) / 20
