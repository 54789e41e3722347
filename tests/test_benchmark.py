"""The known-factor benchmark: its scoring maths on synthetic readouts, the shipped factor regressor against the
drawn shapes' true factors, and a small run on the demo network (coarse factors found in b4, hues in b16)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import stylelens
from stylelens.datasets.shapes import render, sample_factors
from stylelens.directions.benchmark import Settings, best_directions, direction_scores, distance, run_benchmark
from stylelens.directions.benchmark_report import write_report
from stylelens.directions.format import make_set
from stylelens.factors.model import FACTORS, load_regressor, targets, true_angles, true_linear

pytestmark = pytest.mark.usefixtures('private_cache')


@pytest.fixture(scope='module')
def regressor():
    return load_regressor()


def flat_readouts(n: int, s: int) -> dict[str, np.ndarray]:
    reads = {name: np.zeros((n, s)) for name in FACTORS}
    reads['kind'] = np.tile(np.array([0.0, 1.0, 0.0]), (n, s, 1))
    return reads


def test_scores_of_a_direction_that_moves_one_factor():
    values = np.linspace(-2, 2, 5)
    reads = flat_readouts(3, 5)
    reads['x'] = 0.1 * values[None, :] + np.arange(3)[:, None]
    reads['hue'] = np.angle(np.exp(1j * (3.0 + 0.5 * values)))[None].repeat(3, 0)   # wraps past pi
    norm = dict.fromkeys(FACTORS, 0.1)
    reach, corr = direction_scores(reads, values, norm)
    x, hue, size = FACTORS.index('x'), FACTORS.index('hue'), FACTORS.index('size')
    assert corr[x] == pytest.approx(1) and reach[x] == pytest.approx(2.0)      # 0.2 from the middle / 0.1
    assert corr[hue] == pytest.approx(1) and reach[hue] == pytest.approx(10.0)  # unwrapped, 1 rad / 0.1
    assert corr[size] == 0 and reach[size] == 0
    dirs = make_set(np.eye(2, 4), np.ones((2, 1), bool), method='t', options={}, scores=[0, 0], score_name='',
                    labels=['a', 'b'])
    other = np.zeros_like(reach)
    other[size] = 1.0
    best = best_directions(dirs, np.stack([reach, other]), np.stack([corr, other]))
    assert best['x'].label == 'a' and best['x'].leaks_into == 'hue'
    assert best['x'].leakage == pytest.approx(10 / 12)
    assert best['size'].label == 'b' and best['size'].leakage == 0


def test_distances():
    assert distance('hue', np.array(3.0), np.array(-3.0)) == pytest.approx(2 * math.pi - 6)
    assert distance('kind', np.array([1.0, 0, 0]), np.array([0, 0.5, 0.5])) == pytest.approx(1.0)
    assert distance('x', np.array(0.3), np.array(0.5)) == pytest.approx(0.2)


def test_shipped_regressor_reads_the_drawn_shapes(regressor):
    factors = sample_factors(64, 12345)
    images = torch.from_numpy(render(factors, 32)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        readout = regressor.read(images)
    assert (readout.kind.argmax(1).numpy() == factors['shape']).mean() == 1.0
    assert np.abs(readout.linear['x'].numpy() - true_linear(factors, 'x')).mean() < 0.02
    assert np.abs(readout.linear['size'].numpy() - factors['size']).mean() < 0.02
    angles, symmetry = true_angles(factors)
    hue_error = np.abs(np.angle(np.exp(1j * (readout.angles['hue'].numpy() - angles['hue']))))
    assert np.degrees(hue_error).mean() < 10
    kind, goal, mask = targets(factors)
    assert goal.shape == mask.shape == (64, 14) and (mask[symmetry == 0][:, 6:8] == 0).all()
    assert regressor.metrics['kind_accuracy'] > 0.99 and regressor.metrics['train_images'] == 40_000


def test_small_benchmark_on_the_demo_network(tmp_path, regressor):
    G = stylelens.load_generator('demo')
    settings = Settings(num=2, seeds=3, steps=3, train_seeds=40, pairs=6, norm_seeds=32, pca_samples=1000)
    result = run_benchmark(G, regressor, settings=settings, methods=('sefa', 'supervised', 'random'))
    assert set(result.best) == {'sefa', 'supervised', 'random'} and list(result.best['sefa']) == list(FACTORS)
    mean_reach = {m: np.mean([b.reach for b in by.values()]) for m, by in result.best.items()}
    assert mean_reach['sefa'] > 3 * mean_reach['random']          # the floor is far below a real method
    layers = [name.removesuffix('.affine') for name in result.patch_layers]
    top = {name: layers[int(np.argmax(result.patching[f]))] for f, name in enumerate(result.factors)
           if result.patch_pairs[name]}
    assert top.get('x', 'b4.conv1') == 'b4.conv1' and top.get('hue', 'b16.conv0') == 'b16.conv0'
    files = write_report(result, tmp_path, regressor.metrics)
    assert [f.name for f in files] == ['benchmark.json', 'benchmark.md', 'benchmark.png']
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert data['settings']['seeds'] == 3 and set(data['summary']) == {'sefa', 'supervised', 'random'}
    assert '| kind |' in (tmp_path / 'benchmark.md').read_text()


def test_regressor_training_is_reproducible(tmp_path):
    from stylelens.factors.model import load_regressor as load
    from stylelens.factors.train import train_regressor

    first = train_regressor(tmp_path / 'a.pt', count=128, epochs=1, width=8, progress=False, test_count=64)
    second = train_regressor(tmp_path / 'b.pt', count=128, epochs=1, width=8, progress=False, test_count=64)
    for (name, a), b in zip(first.net.state_dict().items(), second.net.state_dict().values()):
        assert torch.equal(a, b), name
    again = load(tmp_path / 'a.pt')
    assert again.metrics['train_images'] == 128 and again.net.width == 8
    torch.save({'format': 'stylelens-factor-regressor', 'version': 1, 'width': 8, 'state_dict': {}},
               tmp_path / 'empty.pt')
    with pytest.raises(stylelens.StylelensError, match='do not fit the factor regressor'):
        load(tmp_path / 'empty.pt')
