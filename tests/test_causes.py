"""Causes, in-process on the demo network: activation patching (exact clean image when every block is patched,
the recovered share, batching), attribution (integrated-gradients completeness, gradient x activation against a
finite difference), ablation (against a plain edit), the S space and style-channel ranking (Hutchinson estimate
against the exact Jacobian), and the metrics' one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import stylelens
from stylelens.causes.ablation import ablate, channel_means
from stylelens.causes.attribution import attribute
from stylelens.causes.metrics import parse_metric, recovered
from stylelens.causes.patching import patch, record, run_patched
from stylelens.causes.points import Point, parse_at
from stylelens.causes.styles import channel_sigmas, locality_maps, rank_by_region, rank_by_scores
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws
from stylelens.probes import edit, probe, zero_channels
from stylelens.stylespace import select_layers, style_layers, styles_of


@pytest.fixture(scope='module')
def G():
    return stylelens.load_generator('demo')


@pytest.fixture(scope='module')
def pair(G):
    ws = seeds_to_ws(G, [1, 2])
    return ws[:1], ws[1:]


def synth(G, ws):
    with torch.no_grad():
        return G.synthesis(ws, noise_mode='const').float()


# ------------------------------------------------------------------------------------------------ patching

def test_patching_every_block_gives_back_the_clean_image_exactly(G, pair):
    clean_ws, corrupt_ws = pair
    spec = parse_at(G, 'blocks')
    assert spec.names == ['synthesis.b4', 'synthesis.b8', 'synthesis.b16', 'synthesis.b32']
    clean_image, clean = record(G, clean_ws, spec.names)
    points = [Point(name) for name in spec.names]
    images = run_patched(G, corrupt_ws, [points, points[-1:], []], clean, batch_size=3)
    assert torch.equal(images[0], clean_image[0]) and torch.equal(images[1], clean_image[0])
    torch.testing.assert_close(images[2:], synth(G, corrupt_ws), atol=1e-5, rtol=0)
    assert not torch.equal(images[2], clean_image[0])


def test_patch_reports_the_share_recovered(G, pair):
    metric = parse_metric('pixels', G.img_resolution)
    result = patch(G, *pair, 'blocks', metric, batch_size=2)
    assert [p.label for p in result.points] == ['b4', 'b8', 'b16', 'b32']
    assert result.recovered[-1] == pytest.approx(1.0, abs=1e-12) and result.all_at_once_max_diff == 0
    assert 0 < result.recovered[0] < 1
    assert result.clean_image.shape == (32, 32, 3) and result.clean_image.dtype == np.uint8
    # The same share from a separate run of the corrupt input with b4 patched in by a plain edit.
    clean_image, clean = record(G, pair[0], ['synthesis.b4'])
    with edit(G, {'b4': lambda x: clean['synthesis.b4']['x']}), edit(G, {'b4': lambda x: clean['synthesis.b4']['img']},
                                                                       part='img'):
        patched = synth(G, pair[1])
    phi = metric.features(torch.cat([clean_image, synth(G, pair[1]), patched]))
    assert float(recovered(phi[2:], phi[:1], phi[1:2])[0]) == pytest.approx(result.recovered[0], abs=1e-4)


def test_channel_patching_and_batch_size_do_not_change_the_result(G, pair):
    metric = parse_metric('region:0,0,16,16', G.img_resolution)
    one = patch(G, *pair, 'channels:b8.conv1', metric, batch_size=64, all_at_once=False)
    assert len(one.points) == 64 and one.points[3].label == 'b8.conv1[3]'
    small = patch(G, *pair, 'channels:b8.conv1', metric, batch_size=5, all_at_once=False)
    np.testing.assert_allclose(one.recovered, small.recovered, atol=1e-4)


def test_style_patching_recovers_what_swapping_that_ws_does(G, pair):
    metric = parse_metric('pixels', G.img_resolution)
    result = patch(G, *pair, 'styles', metric)
    assert result.points[0].name == 'synthesis.b4.conv1.affine'
    mixed = pair[1].clone()
    mixed[:, 0] = pair[0][:, 0]                # ws[0] is read by b4.conv1 only
    phi = metric.features(torch.cat([synth(G, pair[0]), synth(G, pair[1]), synth(G, mixed)]))
    assert float(recovered(phi[2:], phi[:1], phi[1:2])[0]) == pytest.approx(result.recovered[0], abs=1e-4)


def test_hook_point_sets_and_errors(G):
    layers = parse_at(G, 'layers').names
    assert layers[:3] == ['synthesis.b4.conv1', 'synthesis.b4.torgb', 'synthesis.b8.conv0'] and len(layers) == 11
    assert parse_at(G, 'b8.conv0, b16').names == ['synthesis.b8.conv0', 'synthesis.b16']
    with pytest.raises(StylelensError, match="no hook point 'b64'"):
        parse_at(G, 'b64')
    with pytest.raises(StylelensError, match='same metric value'):
        patch(G, *[seeds_to_ws(G, [3])] * 2, 'blocks', parse_metric('pixels', 32))


@pytest.mark.parametrize('spec, message', [
    ('region:0,0,40,16', '0 <= x0 < x1 <= 32'), ('region:a,b', 'region:x0,y0,x1,y1'),
    ('loss', "unknown --metric 'loss'"), ('factor:colour', "no score 'colour'"),
    ('classifier:missing.pt:dog', "'missing.pt' not found"),
])
def test_bad_metrics_are_one_line(spec, message):
    with pytest.raises(StylelensError, match=message) as err:
        parse_metric(spec, 32)
    assert '\n' not in str(err.value)


# ------------------------------------------------------------------------------------------------ attribution

def test_integrated_gradients_are_complete(G, pair):
    metric = parse_metric('region:0,0,16,16', G.img_resolution)
    names = ['synthesis.b8.conv1', 'synthesis.b16.conv0.affine']
    results = attribute(G, pair[0], names, metric, method='ig', baseline_ws=pair[1], steps=32)
    for result in results:
        assert result.total == pytest.approx(result.delta, rel=0.05, abs=1e-3)
        assert result.channels.sum() == pytest.approx(result.total)
    assert results[0].positions.shape == (8, 8) and results[1].positions is None


def test_gradient_times_activation_matches_a_finite_difference(G, pair):
    metric = parse_metric('pixels', G.img_resolution)
    result, = attribute(G, pair[0], ['synthesis.b16.conv0.affine'], metric)
    channel = int(np.abs(result.channels).argmax())
    styles = styles_of(G, pair[0], [layer for layer in style_layers(G) if layer.name == 'synthesis.b16.conv0'])
    value = float(next(iter(styles.values()))[0, channel])
    eps = 1e-3

    def scaled(factor):
        def fn(x):
            x = x.clone()
            x[:, channel] *= factor
            return x
        with edit(G, {'b16.conv0.affine': fn}):
            return float(metric.scalar(synth(G, pair[0]))[0])

    slope = (scaled(1 + eps) - scaled(1 - eps)) / (2 * eps)   # d m / d log(s) = s * dm/ds
    assert value != 0 and result.channels[channel] == pytest.approx(slope, rel=1e-2)


def test_vector_metric_without_baseline_is_refused(G, pair):
    with pytest.raises(StylelensError, match='pass a baseline'):
        attribute(G, pair[0], ['synthesis.b8.conv1'], parse_metric('factor:hue', 32))


# ------------------------------------------------------------------------------------------------ ablation

def test_zero_ablation_matches_a_plain_edit(G):
    ws = seeds_to_ws(G, [0, 1, 2])
    metric = parse_metric('pixels', G.img_resolution)
    result = ablate(G, ws, 'synthesis.b8.conv1', metric, channels=[3, 5], batch_size=4)
    assert result.channels == [3, 5] and np.isnan(result.change).all()
    with edit(G, {'b8.conv1': zero_channels(5)}):
        edited = synth(G, ws)
    rms = (edited - synth(G, ws)).flatten(1).square().mean(1).sqrt().mean()
    assert result.size[1] == pytest.approx(float(rms), rel=1e-4)
    assert result.rows()[0]['size'] == max(result.size)


def test_mean_ablation_uses_the_mean_activation(G):
    ws = seeds_to_ws(G, [0, 1])
    means = channel_means(G, 'synthesis.b4.conv1', seeds_to_ws(G, range(100, 110)))
    with probe(G, ['b4.conv1']) as rec:
        synth(G, seeds_to_ws(G, range(100, 110)))
    torch.testing.assert_close(means, rec['synthesis.b4.conv1'].mean(0, keepdim=True))
    metric = parse_metric('factor:size', G.img_resolution)
    result = ablate(G, ws, 'synthesis.b4.conv1', metric, channels=[0], mode='mean',
                    mean_ws=seeds_to_ws(G, range(100, 110)))
    assert result.size[0] >= abs(result.change[0]) > 0 and result.baseline > 0
    with pytest.raises(StylelensError, match='channels 0..63'):
        ablate(G, ws, 'synthesis.b4.conv1', metric, channels=[64])


# ------------------------------------------------------------------------------------------------ styles

def test_styles_are_the_affine_outputs_of_a_forward_pass(G):
    ws = seeds_to_ws(G, [4, 5])
    ws[:, 3] = seeds_to_ws(G, [9])[:, 3]         # different ws per layer: each affine must read its own
    layers = style_layers(G)
    with probe(G, [layer.affine for layer in layers]) as rec:
        synth(G, ws)
    for layer, values in zip(layers, styles_of(G, ws, layers).values()):
        torch.testing.assert_close(values, rec[layer.affine])
    assert sum(layer.channels for layer in layers) == 640
    assert [layer.short for layer in select_layers(G, 'b32', torgb=True)] == ['b16.torgb', 'b32.conv0', 'b32.conv1',
                                                                              'b32.torgb']


def test_rank_by_scores_finds_the_channel_the_scores_come_from(G):
    ws = seeds_to_ws(G, range(40))
    layers = style_layers(G)
    target = next(iter(styles_of(G, ws, layers[2:3]).values()))[:, 7].double().numpy()
    ranking = rank_by_scores(G, range(40), target, layers, chunk=16)  # 3 chunks: their sums added in order
    assert (ranking.layers[0], int(ranking.channels[0])) == ('b8.conv0', 7)
    assert ranking.scores[0] == pytest.approx(1.0) and ranking.details['r'][0] == pytest.approx(1.0)


def test_region_ranking_estimates_the_jacobian(G):
    layers = [layer for layer in style_layers(G) if layer.short == 'b16.conv0']
    ws = seeds_to_ws(G, [0])
    sigmas = channel_sigmas(G, range(1000, 1200), layers)
    ranking = rank_by_region(G, ws, (0, 0, 16, 16), layers, sigmas, probes=128, batch_size=64)
    # Exact in-region energy of the top channels by central differences on the style.
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[:16, :16] = True
    for k in range(3):
        channel, h = int(ranking.channels[k]), 1e-2
        sigma = float(sigmas[layers[0].name][channel])

        def moved(amount, c=channel):
            def fn(x):
                x = x.clone()
                x[:, c] += amount
                return x
            with edit(G, {'b16.conv0.affine': fn}):
                return synth(G, ws)
        jac = (moved(h) - moved(-h)) / (2 * h)
        exact = float(jac[..., inside].square().mean()) * sigma ** 2
        assert ranking.details['in_rms'][k] ** 2 == pytest.approx(exact, rel=0.35)
    maps, ends = locality_maps(G, ws, [(layers[0], int(ranking.channels[0]))], sigmas)
    assert maps.shape == (1, 32, 32) and ends.shape == (1, 2, 3, 32, 32)


def test_stylegan3_patching_and_attribution():
    from stylelens.vendor.stylegan3.networks import Generator

    torch.manual_seed(0)
    G3 = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=512,
                   channel_max=16).eval().requires_grad_(False)
    ws = G3.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), None)
    spec = parse_at(G3, 'blocks')
    assert spec.names[0] == 'synthesis.input' and len(spec.names) == G3.num_ws
    clean_image, clean = record(G3, ws[:1], spec.names)
    images = run_patched(G3, ws[1:], [[Point(n) for n in spec.names], [Point(spec.names[-1])]], clean)
    assert torch.equal(images[0], clean_image[0]) and torch.equal(images[1], clean_image[0])
    styles = parse_at(G3, 'styles').names     # SG3 forward passes are slow on CPU: the names, not a patch run
    assert len(styles) == G3.num_ws - 1 and styles[0].startswith('synthesis.L0_') and styles[0].endswith('.affine')
    result, = attribute(G3, ws[:1], [styles[2]], parse_metric('pixels', 16))
    assert result.channels.shape == (16,) and result.positions is None and np.abs(result.channels).sum() > 0
