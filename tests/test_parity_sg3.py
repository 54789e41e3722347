"""StyleGAN3 parity with NVIDIA's own outputs: every array of the T and R oracle fixtures, reproduced from their
pickles, and the rebuilt networks' geometry and tensors against the fixture JSON.

Tolerance: float32 atol 1e-4; uint8 images within 1 level (the official conversion truncates).
"""
from __future__ import annotations

import numpy as np
import pytest
import test_parity as parity
import torch
from oracle_helpers import capture, check_mapping, check_mapping_layers, close, load_case

from stylelens.input_transform import make_transform, with_input_transform
from stylelens.latents import seeds_to_z

FIXTURES = ['sg3t_cond32', 'sg3r_32']
TRANSLATE, ROTATE = (0.1, -0.05), 3.0

# Every npz key (or key prefix) and the test that reproduces it; test_every_array_is_checked keeps this complete.
CHECKED_KEYS = ('z', 'c', 'w_avg', 'ws_psi1', 'ws_psi07', 'ws_psi07_cut4', 'img_const_psi1', 'img_none_psi1',
                'img_const_psi07', 'img_uint8_psi07', 'map.', 'layer.', 'block_run.ws', 'block_run.img', 'mix_grid',
                'mix_ws', 'd_logits', 'img_const_psi1_translated', 'translate_matrix', 'translate_matrix_inv',
                'translate_transform_buffer')


@pytest.fixture(scope='module', params=FIXTURES)
def case(request, oracle_dir):
    """(networks, reference arrays, fixture JSON) for one StyleGAN3 oracle pickle."""
    return load_case(oracle_dir, request.param)


def test_every_array_is_checked(case):
    _, ref, meta = case
    assert set(ref) == set(meta['npz_keys'])
    assert [k for k in ref if not any(k == c or (c.endswith('.') and k.startswith(c)) for c in CHECKED_KEYS)] == []


def test_latents_and_mapping(case):
    nets, ref, _ = case
    G = nets['G_ema']
    np.testing.assert_array_equal(ref['z'], seeds_to_z(range(4), G.z_dim).astype(np.float32))
    np.testing.assert_array_equal(ref['c'], np.eye(G.c_dim, dtype=np.float32)[np.arange(4) % G.c_dim] if G.c_dim
                                  else np.zeros((4, 0), np.float32))
    check_mapping(G, ref)


@pytest.mark.parametrize('key,ws_key,noise_mode', [('img_const_psi1', 'ws_psi1', 'const'),
                                                    ('img_none_psi1', 'ws_psi1', 'none'),
                                                    ('img_const_psi07', 'ws_psi07', 'const')])
def test_synthesis_images(case, key, ws_key, noise_mode):
    nets, ref, _ = case
    close(nets['G_ema'].synthesis(torch.from_numpy(ref[ws_key]), noise_mode=noise_mode, force_fp32=True), ref[key])


# The checks of test_parity.py that hold as they are for StyleGAN3 (uint8 images per seed, the mixing grid),
# collected here with this module's `case`.
test_uint8_images_per_seed = parity.test_uint8_images_per_seed
test_style_mixing_grid = parity.test_style_mixing_grid


def test_mapping_layers(case):
    nets, ref, _ = case
    G = nets['G_ema']
    assert [k for k in ref if k.startswith('map.')] == [f'map.fc{i}' for i in range(G.mapping.num_layers)]
    check_mapping_layers(G, ref)


def test_every_synthesis_layer(case):
    """Forward hooks on the Fourier input and every layer L0 ... ToRGB (before output_scale), seed 0 at batch 1."""
    nets, ref, meta = case
    G = nets['G_ema']
    names = [k[len('layer.'):] for k in ref if k.startswith('layer.')]
    assert names == ['input', *G.synthesis.layer_names] == list(meta['ws_index_of_layer'])
    ws = torch.from_numpy(ref['block_run.ws'])
    images: list = []
    found = capture(G.synthesis, names, lambda: images.append(G.synthesis(ws, noise_mode='const')))
    close(images[0], ref['block_run.img'])
    for name in names:
        close(found[name], ref[f'layer.{name}'])
    close(found[G.synthesis.layer_names[-1]] * G.synthesis.output_scale, ref['block_run.img'])


def test_mix_sources_are_mapped_seeds(case):
    """mix_ws are seeds 0-4 mapped in one batch (conditional fixture: every source is class 1)."""
    nets, ref, _ = case
    G = nets['G_ema']
    z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, G.z_dim) for s in range(5)]))
    c = torch.zeros(5, G.c_dim)
    if G.c_dim:
        c[:, 1] = 1
    close(G.mapping(z, c), ref['mix_ws'])


def test_discriminator(case):
    nets, ref, _ = case
    images, c = torch.from_numpy(ref['img_const_psi1']), torch.from_numpy(ref['c'])
    close(nets['D'](images, c), ref['d_logits'])


def test_translated_and_rotated_input(case):
    """gen_images.py --translate 0.1,-0.05 --rotate 3 on a copy of G_ema; the loaded G_ema is left unchanged."""
    nets, ref, _ = case
    if 'img_const_psi1_translated' not in ref:
        pytest.skip('this fixture has no translated reference')
    G = nets['G_ema']
    stored = G.synthesis.input.transform.clone()
    np.testing.assert_allclose(make_transform(TRANSLATE, ROTATE), ref['translate_matrix'], rtol=0, atol=1e-7)
    np.testing.assert_allclose(np.linalg.inv(make_transform(TRANSLATE, ROTATE)), ref['translate_matrix_inv'],
                               rtol=0, atol=1e-7)
    moved = with_input_transform(G, TRANSLATE, ROTATE)
    assert torch.equal(moved.synthesis.input.transform, torch.from_numpy(ref['translate_transform_buffer']))
    close(moved.synthesis(torch.from_numpy(ref['ws_psi1']), noise_mode='const'), ref['img_const_psi1_translated'])
    assert torch.equal(G.synthesis.input.transform, stored)
    assert moved.synthesis.L0_36_64.weight is G.synthesis.L0_36_64.weight


def test_geometry_matches_the_official_layers(case):
    """Every layer's sizes, rates, cutoffs, filters and padding, and the Fourier input, as the fixture lists them."""
    nets, _, meta = case
    synthesis = nets['G_ema'].synthesis
    assert synthesis.output_scale == meta['sg3_output_scale'] and nets['G_ema'].num_ws == meta['num_ws']
    assert synthesis.layer_ws_indices() == meta['ws_index_of_layer']
    source = meta['sg3_input']
    assert (synthesis.input.channels, list(synthesis.input.size)) == (source['channels'], source['size'])
    assert (synthesis.input.sampling_rate, synthesis.input.bandwidth) == (source['sampling_rate'], source['bandwidth'])
    for name, expected in meta['sg3_layers'].items():
        layer = getattr(synthesis, name)
        for attr, value in expected.items():
            if attr == 'ws_index':
                continue
            ours = getattr(layer, attr)
            ours = [int(v) for v in ours] if attr in ('in_size', 'out_size') else ours
            assert ours == pytest.approx(value, rel=1e-12), (name, attr)


def test_state_dicts_and_kwargs_match_the_fixture(case):
    nets, _, meta = case
    for net, key in (('G_ema', 'G_ema_state_dict'), ('D', 'D_state_dict')):
        assert [(k, list(v.shape)) for k, v in nets[net].state_dict().items()] == [(n, s) for n, s, _ in meta[key]]
    assert type(nets['G_ema']).__module__ == 'stylelens.vendor.stylegan3.networks'
    kwargs = nets['G_ema']._init_kwargs  # the recorded kwargs, plus the defaults read back from the sub-modules
    for key, value in meta['G_ema_init_kwargs'].items():
        assert kwargs[key].items() >= value.items() if isinstance(value, dict) else kwargs[key] == value, key
    assert nets['G'].state_dict().keys() == nets['G_ema'].state_dict().keys()
    assert not torch.equal(nets['G'].mapping.w_avg, nets['G_ema'].mapping.w_avg)
    assert nets['training_set_kwargs']['resolution'] == meta['training_set_kwargs']['resolution']
