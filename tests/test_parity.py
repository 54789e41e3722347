"""Parity with NVIDIA's own outputs: every array in the shared oracle, reproduced from the oracle pickles.

Tolerance: float32 atol 1e-4; uint8 images within 1 level (the official conversion truncates).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from oracle_helpers import capture, check_mapping, check_mapping_layers, close, load_case

from stylelens.outputs import to_uint8

FIXTURES = ['sg2_uncond64', 'sg2_cond32', 'sg3_sg2_64']
VARIANTS = {'sg2_uncond64.p3.pkl': 'sg2_uncond64', 'sg2_cond32.np1.pkl': 'sg2_cond32'}


@pytest.fixture(scope='module', params=FIXTURES + list(VARIANTS))
def case(request, oracle_dir):
    """(networks, reference arrays, fixture JSON) for one oracle pickle."""
    pickle_name = request.param if request.param.endswith('.pkl') else None
    return load_case(oracle_dir, VARIANTS.get(request.param, request.param), pickle_name)


def test_mapping_and_truncation(case):
    nets, ref, _ = case
    check_mapping(nets['G_ema'], ref)


@pytest.mark.parametrize('key,ws_key,noise_mode', [('img_const_psi1', 'ws_psi1', 'const'),
                                                    ('img_none_psi1', 'ws_psi1', 'none'),
                                                    ('img_const_psi07', 'ws_psi07', 'const')])
def test_synthesis_images(case, key, ws_key, noise_mode):
    nets, ref, _ = case
    close(nets['G_ema'].synthesis(torch.from_numpy(ref[ws_key]), noise_mode=noise_mode), ref[key])


def test_uint8_images_per_seed(case):
    """G(z, c, psi 0.7) at batch 1 per seed, as generate.py (gen_images.py for StyleGAN3) writes its PNGs."""
    nets, ref, _ = case
    G = nets['G_ema']
    for i in range(len(ref['z'])):
        z, c = torch.from_numpy(ref['z'][i:i + 1]), torch.from_numpy(ref['c'][i:i + 1])
        image = to_uint8(G(z, c, truncation_psi=0.7, noise_mode='const'))[0].astype(int)
        assert np.abs(image - ref['img_uint8_psi07'][i].astype(int)).max() <= 1


def test_mapping_layers(case):
    nets, ref, _ = case
    check_mapping_layers(nets['G_ema'], ref)


def test_synthesis_blocks_and_layers(case):
    nets, ref, _ = case
    G = nets['G_ema']
    block_names = sorted({k.split('.')[1] for k in ref if k.startswith('block.b')})
    layer_keys = [k for k in ref if k.startswith('layer.')]
    names = block_names + [k[len('layer.'):] for k in layer_keys]
    ws = torch.from_numpy(ref['block_run.ws'])
    found_img: list = []
    found = capture(G.synthesis, names, lambda: found_img.append(G.synthesis(ws, noise_mode='const')))
    close(found_img[0], ref['block_run.img'])
    for key in layer_keys:
        close(found[key[len('layer.'):]], ref[key])
    for block in block_names:
        x, img = found[block]
        close(x, ref[f'block.{block}.x'])
        if f'block.{block}.img' in ref:
            close(img, ref[f'block.{block}.img'])
        else:
            assert img is None


def test_style_mixing_grid(case):
    """style_mixing.py semantics: row ws with col_styles 0-3 taken from the column seed, each cell at batch 1."""
    nets, ref, _ = case
    G = nets['G_ema']
    mix_ws = torch.from_numpy(ref['mix_ws'])
    rows, cols, col_styles = [0, 1, 2], [3, 4], [0, 1, 2, 3]
    for r, row in enumerate(rows):
        for k, col in enumerate(cols):
            w = mix_ws[row].clone()
            w[col_styles] = mix_ws[col][col_styles]
            image = G.synthesis(w[None], noise_mode='const')
            close(image[0], ref['mix_grid'][r, k])
            if 'mix_grid_uint8' in ref:
                assert np.abs(to_uint8(image)[0].astype(int) - ref['mix_grid_uint8'][r, k].astype(int)).max() <= 1
    if 'mix3' in ref:
        close(G.synthesis(torch.from_numpy(ref['mix3_ws']), noise_mode='const'), ref['mix3'])


def test_discriminator(case):
    nets, ref, meta = case
    D = nets['D']
    images, c = torch.from_numpy(ref['img_const_psi1']), torch.from_numpy(ref['c'])
    block_names = sorted({k.split('.')[1] for k in ref if k.startswith('dblock.')})
    found_logits: list = []
    found = capture(D, block_names, lambda: found_logits.append(D(images, c)))
    close(found_logits[0], ref['d_logits'])
    for name in block_names:
        out = found[name]
        x = out[0] if isinstance(out, tuple) else out
        close(x[:1], ref[f'dblock.{name}'])
        if f'dblock.{name}.img' in ref:
            close(out[1][:1], ref[f'dblock.{name}.img'])
    if 'dmap.cmap' in ref:
        close(D.mapping(None, c), ref['dmap.cmap'])


def test_state_dicts_and_kwargs_match_the_fixture(case):
    nets, _, meta = case
    for net, key in (('G_ema', 'G_ema_state_dict'), ('D', 'D_state_dict')):
        expected = {name: tuple(shape) for name, shape, _ in meta[key]}
        assert {k: tuple(v.shape) for k, v in nets[net].state_dict().items()} == expected
    assert nets['training_set_kwargs']['resolution'] == meta['training_set_kwargs']['resolution']
    assert nets['G'].state_dict().keys() == nets['G_ema'].state_dict().keys()
    assert not torch.equal(nets['G'].mapping.w_avg, nets['G_ema'].mapping.w_avg)
