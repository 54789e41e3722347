"""Interpolation and traversal: the maths (lerp, slerp, paths, PCA of W, directions) in-process on the demo network,
and `stylelens interpolate` / `stylelens traverse` through the real console script (started in parallel, once)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

import stylelens
from stylelens.directions.pca import pca_directions, w_pca
from stylelens.directions.spec import Direction, direction_from_spec
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws
from stylelens.latents import seeds_to_z
from stylelens.mixing import parse_layers
from stylelens.traversal import interpolation_ws, lerp, map_z, path_points, slerp, traversal_ws
from stylelens.walks import strip_columns

PCA_SAMPLES = 512
HAVE_FFMPEG = importlib.util.find_spec('imageio_ffmpeg') is not None
pytestmark = pytest.mark.usefixtures('private_cache')


@pytest.fixture(scope='module')
def G():
    return stylelens.load_generator('demo')


def rng_vectors(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).randn(n, dim))


# ------------------------------------------------------------------------------------------------ lerp / slerp

@pytest.mark.parametrize('blend', [lerp, slerp])
def test_endpoints_are_exact(blend):
    a, b = rng_vectors(2, 64)
    assert torch.equal(blend(a, b, 0.0), a)
    assert torch.equal(blend(a, b, 1.0), b)


def test_slerp_keeps_unit_vectors_on_the_sphere():
    a, b = torch.nn.functional.normalize(rng_vectors(2, 32, seed=1), dim=-1)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    norms = slerp(a[None], b[None], t).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(11, dtype=torch.float64))
    assert lerp(a, b, 0.5).norm() < 0.99  # the chord cuts inside, which slerp avoids


@pytest.mark.parametrize('factor', [2.0, -1.0, 0.0])
def test_slerp_falls_back_to_lerp_for_parallel_antiparallel_and_zero(factor):
    a = rng_vectors(1, 16, seed=2)[0]
    b = factor * a
    t = torch.tensor([[0.0], [0.3], [1.0]], dtype=torch.float64)
    result = slerp(a[None], b[None], t)
    assert torch.isfinite(result).all()
    torch.testing.assert_close(result, lerp(a[None], b[None], t))


def test_slerp_rows_are_independent():
    a = rng_vectors(2, 8, seed=3)
    b = torch.stack([2 * a[0], rng_vectors(1, 8, seed=4)[0]])  # row 0 parallel, row 1 generic
    mixed = slerp(a, b, 0.5)
    torch.testing.assert_close(mixed[0], lerp(a[0], b[0], 0.5))
    torch.testing.assert_close(mixed[1], slerp(a[1], b[1], 0.5))


# ------------------------------------------------------------------------------------------------ paths

@pytest.mark.parametrize('spherical', [False, True])
def test_path_hits_every_keyframe_once(spherical):
    keys = rng_vectors(3, 8, seed=5)
    points = path_points(keys, 10, spherical)
    assert points.shape == (10, 8)
    hits = [[i for i, p in enumerate(points) if torch.equal(p, key)] for key in keys]
    assert hits == [[0], [5], [9]]  # 9 steps over 2 segments: 5 + 4


def test_looping_path_does_not_repeat_the_first_keyframe():
    keys = rng_vectors(3, 8, seed=6)
    points = path_points(keys, 9, spherical=True, loop=True)
    assert points.shape == (9, 8)
    hits = [[i for i, p in enumerate(points) if torch.equal(p, key)] for key in keys]
    assert hits == [[0], [3], [6]]
    assert not torch.equal(points[-1], keys[0])


def test_path_keeps_trailing_dims():
    keys = torch.from_numpy(np.random.RandomState(7).randn(2, 4, 6))
    points = path_points(keys, 5, spherical=True)
    assert points.shape == (5, 4, 6)
    assert torch.equal(points[0], keys[0]) and torch.equal(points[-1], keys[1])


def test_path_with_too_few_frames_is_a_user_error():
    with pytest.raises(StylelensError, match='--frames 2 is too few for 3 keyframes'):
        path_points(rng_vectors(3, 4), 2, spherical=False)


def test_strip_columns_are_evenly_spaced_and_capped():
    assert strip_columns(5) == [0, 1, 2, 3, 4]
    columns = strip_columns(60)
    assert len(columns) == 16 and columns[0] == 0 and columns[-1] == 59


# ------------------------------------------------------------------------------------------------ interpolation_ws

def test_interpolation_in_w_starts_and_ends_at_the_mapped_seeds(G):
    ws = interpolation_ws(G, [1, 2], space='w', frames=7, truncation_psi=0.7)
    expected = seeds_to_ws(G, [1, 2], truncation_psi=0.7)
    assert ws.shape == (7, G.num_ws, G.w_dim) and ws.dtype == torch.float32
    assert torch.equal(ws[0], expected[0]) and torch.equal(ws[-1], expected[1])


def test_interpolation_in_z_maps_the_interpolated_latents(G):
    ws = interpolation_ws(G, [1, 2], space='z', frames=5)
    z = seeds_to_z([1, 2], G.z_dim)
    torch.testing.assert_close(ws[[0, -1]], seeds_to_ws(G, [1, 2]))
    middle = slerp(torch.from_numpy(z[0]), torch.from_numpy(z[1]), 0.5)
    torch.testing.assert_close(ws[2], map_z(G, middle[None])[0])


def test_unknown_space_is_a_user_error(G):
    with pytest.raises(StylelensError, match='choose one of z, w'):
        interpolation_ws(G, [1, 2], space='x', frames=4)


# ------------------------------------------------------------------------------------------------ PCA

def test_pca_directions_are_orthonormal_sorted_and_signed(G):
    components, ratio, mean = pca_directions(G, num_samples=PCA_SAMPLES)
    assert components.shape == (G.w_dim, G.w_dim) and mean.shape == (G.w_dim,)
    np.testing.assert_allclose(components @ components.T, np.eye(G.w_dim), atol=1e-8)
    assert np.all(np.diff(ratio) <= 0) and ratio.sum() == pytest.approx(1.0)
    largest = components[np.arange(len(components)), np.abs(components).argmax(axis=1)]
    assert np.all(largest > 0)


def test_pca_is_reproducible_and_cached(G, tmp_path):
    first = w_pca(G, PCA_SAMPLES, seed=3)
    cached = sorted((tmp_path / 'cache' / 'pca').glob('*-n512-seed3.npz'))
    assert len(cached) == 1
    again = w_pca(G, PCA_SAMPLES, seed=3, use_cache=False)
    np.testing.assert_allclose(again.components, first.components, atol=1e-10)
    from_cache = w_pca(G, PCA_SAMPLES, seed=3)
    np.testing.assert_array_equal(from_cache.components, first.components)


def test_sigma_is_the_std_of_w_along_the_direction(G):
    pca = w_pca(G, PCA_SAMPLES)
    samples = map_z(G, np.random.RandomState(0).randn(PCA_SAMPLES, G.z_dim))[:, 0].double().numpy()
    for spec in ('pca:0', 'pca:5', 'random:7'):
        direction = direction_from_spec(G, spec, num_samples=PCA_SAMPLES)
        assert np.linalg.norm(direction.vector) == pytest.approx(1.0)
        assert direction.scale == pytest.approx((samples @ direction.vector).std(ddof=1), rel=1e-6)
    assert direction_from_spec(G, 'pca:0', num_samples=PCA_SAMPLES).explained_variance_ratio == pytest.approx(
        pca.explained_variance_ratio[0])


def test_pca_index_out_of_range_names_the_range(G):
    with pytest.raises(StylelensError, match=f'pca:0..pca:{G.w_dim - 1}'):
        direction_from_spec(G, 'pca:999', num_samples=PCA_SAMPLES)


# ------------------------------------------------------------------------------------------------ directions

def test_direction_files(G, tmp_path):
    vector = np.random.RandomState(1).randn(G.w_dim)
    np.save(tmp_path / 'd.npy', 5 * vector)
    direction = direction_from_spec(G, str(tmp_path / 'd.npy'), num_samples=PCA_SAMPLES)
    np.testing.assert_allclose(direction.vector, vector / np.linalg.norm(vector))
    per_layer = np.random.RandomState(2).randn(G.num_ws, G.w_dim)
    np.savez(tmp_path / 'd.npz', direction=per_layer, other=np.zeros(3))
    offset = direction_from_spec(G, str(tmp_path / 'd.npz'))
    np.testing.assert_array_equal(offset.vector, per_layer)
    assert offset.scale == 1.0 and offset.unit == ''


def test_direction_file_of_the_wrong_shape_states_the_accepted_shapes(G, tmp_path):
    np.save(tmp_path / 'bad.npy', np.ones((3, G.w_dim)))
    with pytest.raises(StylelensError) as err:
        direction_from_spec(G, str(tmp_path / 'bad.npy'))
    assert f'[{G.w_dim}] (w_dim) or [{G.num_ws}, {G.w_dim}] (num_ws, w_dim)' in str(err.value)
    assert f'[3, {G.w_dim}]' in str(err.value)


@pytest.mark.parametrize('spec', ['foo:1', 'pca:x', 'random:', 'random:99999999999', 'pca'])
def test_unknown_direction_specs(G, spec):
    with pytest.raises(StylelensError, match='expected pca:K, random:S'):
        direction_from_spec(G, spec)


# ------------------------------------------------------------------------------------------------ traversal

def test_traversal_only_touches_the_chosen_layers(G):
    direction = Direction(np.eye(G.w_dim)[0], 2.0, 'axis 0')
    layers = parse_layers(G, 'b8')
    base = seeds_to_ws(G, [5])[0]
    ws = traversal_ws(G, 5, direction, [-1.0, 0.0, 1.5], layers)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    others = [i for i in range(G.num_ws) if i not in layers]
    assert torch.equal(ws[:, others], base[others].expand(3, -1, -1))
    assert torch.equal(ws[1], base)
    expected = torch.zeros_like(base[layers])
    expected[:, 0] = 1.5 * 2.0
    torch.testing.assert_close(ws[2, layers] - base[layers], expected)


def test_traversal_with_a_per_layer_offset(G):
    offset = np.zeros((G.num_ws, G.w_dim))
    offset[3, 7] = 1.0
    ws = traversal_ws(G, 5, Direction(offset, 1.0, 'file'), [2.0])
    delta = ws[0] - seeds_to_ws(G, [5])[0]
    assert torch.nonzero(delta).tolist() == [[3, 7]] and delta[3, 7].item() == pytest.approx(2.0)


def test_traversal_rejects_out_of_range_layers(G):
    with pytest.raises(StylelensError, match=f'0..{G.num_ws - 1}'):
        traversal_ws(G, 5, Direction(np.eye(G.w_dim)[0], 1.0, 'x'), [1.0], [G.num_ws])


# ------------------------------------------------------------------------------------------------ CLI

RUNS = {
    'walk gif': ['interpolate', '--seeds', '1,2,3', '--frames', '7', '--loop', '--out', 'walk.gif', '--compare'],
    'strip png': ['interpolate', '--seeds', '1,2', '--space', 'w', '--frames', '20', '--out', 'out/strip.png'],
    'walk mp4': ['interpolate', '--seeds', '1,2', '--frames', '6', '--out', 'walk.mp4'],
    'pca strip': ['traverse', '--seed', '5', '--direction', 'pca:0', '--steps', '5', '--layers', 'b4,b8',
                  '--pca-samples', str(PCA_SAMPLES), '--out', 'pca.png'],
    'random gif': ['traverse', '--seed', '5', '--direction', 'random:7', '--steps', '4', '--range', '-2,2',
                   '--pca-samples', str(PCA_SAMPLES), '--out', 'random.gif'],
    'pca:999': ['traverse', '--seed', '5', '--direction', 'pca:999', '--pca-samples', str(PCA_SAMPLES),
                '--out', 'x.png'],
    'foo:1': ['traverse', '--seed', '5', '--direction', 'foo:1', '--out', 'x.png'],
    'missing file': ['traverse', '--seed', '5', '--direction', 'missing.npy', '--out', 'x.png'],
}
BAD = {'pca:999': 'pca:0..pca:255', 'foo:1': "unknown --direction 'foo:1'", 'missing file': "'missing.npy' not found"}


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """name -> (finished `stylelens` process, its working directory), all started at once."""
    env = {**os.environ, 'STYLELENS_CACHE': str(tmp_path_factory.mktemp('cache')), 'OMP_NUM_THREADS': '1'}
    names = [name for name in RUNS if HAVE_FFMPEG or name != 'walk mp4']

    def run(name: str) -> tuple[str, tuple[subprocess.CompletedProcess, Path]]:
        cwd = tmp_path_factory.mktemp('run')
        result = subprocess.run(['stylelens', *RUNS[name]], cwd=cwd, capture_output=True, text=True, env=env,
                                timeout=300)
        return name, (result, cwd)

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return dict(pool.map(run, names))


def succeeded(runs: dict, name: str) -> Path:
    result, cwd = runs[name]
    assert result.returncode == 0, f'{name}: exit {result.returncode}\n{result.stderr}'
    assert 'Traceback' not in result.stderr
    return cwd


def manifest(path: Path) -> dict:
    return json.loads(path.with_name(f'{path.stem}.manifest.json').read_text())


def test_interpolate_gif_has_every_frame_and_a_comparison(runs):
    cwd = succeeded(runs, 'walk gif')
    frames = iio.imread(cwd / 'walk.gif', index=None)
    assert frames.shape == (7, 32, 32, 3)
    with Image.open(cwd / 'walk_z_vs_w.png') as figure:
        assert figure.width > figure.height > 128
    recorded = manifest(cwd / 'walk.gif')
    assert recorded['command'] == 'interpolate' and recorded['options']['slerp'] is True
    assert recorded['extra']['files'] == ['walk.gif', 'walk_z_vs_w.png']
    assert recorded['extra']['compare']['rows'] == ['Z (slerp)', 'W (lerp)']
    assert not list(cwd.glob('.*tmp*'))


def test_interpolate_strip_is_subsampled_to_16_columns(runs):
    cwd = succeeded(runs, 'strip png')
    with Image.open(cwd / 'out' / 'strip.png') as strip:
        assert strip.size == (16 * 32, 32)
    recorded = manifest(cwd / 'out' / 'strip.png')
    assert recorded['extra']['frames_written'] == 16 and '16 of 20 frames' in recorded['extra']['strip']


@pytest.mark.skipif(not HAVE_FFMPEG, reason='imageio-ffmpeg is not installed (pip install imageio-ffmpeg)')
def test_interpolate_mp4(runs):
    cwd = succeeded(runs, 'walk mp4')
    frames = iio.imread(cwd / 'walk.mp4', plugin='FFMPEG')
    assert frames.shape == (6, 32, 32, 3)


def test_traverse_pca_strip(runs):
    cwd = succeeded(runs, 'pca strip')
    with Image.open(cwd / 'pca.png') as figure:
        assert figure.width > 5 * 64
    recorded = manifest(cwd / 'pca.png')
    assert recorded['extra']['layers'] == [0, 1, 2]
    assert recorded['extra']['values'] == [-3.0, -1.5, 0.0, 1.5, 3.0]
    assert 0 < recorded['extra']['explained_variance_ratio'] < 1


def test_traverse_random_gif(runs):
    cwd = succeeded(runs, 'random gif')
    assert iio.imread(cwd / 'random.gif', index=None).shape == (4, 32, 32, 3)
    recorded = manifest(cwd / 'random.gif')
    assert recorded['extra']['explained_variance_ratio'] is None and recorded['extra']['unit'] == 'σ'


@pytest.mark.parametrize('name', sorted(BAD))
def test_bad_directions_fail_with_one_line(runs, name):
    result, cwd = runs[name]
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1 and BAD[name] in errors[0], result.stderr
    assert not (cwd / 'x.png').exists() and not (cwd / 'x.manifest.json').exists()
