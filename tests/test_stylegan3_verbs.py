"""The analysis verbs on StyleGAN3 generators: summary, hook names, layer specs and presets, mixing grids,
activation dumps, the input transform, and `stylelens info / generate / mix / activations` on the oracle pickles."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_stylegan3 import R_OPTIONS, tiny_sg3

import stylelens
from conftest import run_stylelens, tiny_networks
from stylelens.activations import dump_activations
from stylelens.generation import seeds_to_ws, synthesize
from stylelens.input_transform import with_input_transform
from stylelens.mixing import block_owned, block_reads, parse_layers, preset_blocks, render_grids, styles_caption
from stylelens.outputs import to_uint8
from stylelens.probes import hook_names, probe, resolve_name
from stylelens.summary import network_summary

LAYERS_16 = ['L0_36_16', 'L1_36_16', 'L2_36_16', 'L3_36_16', 'L4_36_16', 'L5_36_16', 'L6_36_16', 'L7_36_16',
             'L8_36_16', 'L9_36_16', 'L10_36_16', 'L11_36_16', 'L12_36_16', 'L13_16_16', 'L14_16_3']


@pytest.fixture(scope='module')
def G():
    return tiny_sg3(c_dim=2)


@pytest.fixture(scope='module')
def G64():
    return tiny_sg3(img_resolution=64, **R_OPTIONS)


def test_hook_names_are_the_official_module_tree(G):
    """Written out by hand (official order: synthesis before mapping) so renames never slip through."""
    expected = ['synthesis', 'synthesis.input', 'synthesis.input.affine']
    for name in LAYERS_16:
        expected += [f'synthesis.{name}', f'synthesis.{name}.affine']
    expected += ['mapping', 'mapping.embed', 'mapping.fc0', 'mapping.fc1']
    assert G.synthesis.layer_names == LAYERS_16 and hook_names(G) == expected


def test_short_layer_names_resolve(G):
    assert resolve_name(G, 'L3') == resolve_name(G, 'L3_36_16') == 'synthesis.L3_36_16'
    assert resolve_name(G, 'L14.affine') == 'synthesis.L14_16_3.affine'
    assert resolve_name(G, 'synthesis.L1') == 'synthesis.L1_36_16'
    assert resolve_name(G, 'input') == 'synthesis.input'
    with pytest.raises(stylelens.StylelensError, match="no hook point 'L15'"):
        resolve_name(G, 'L15')
    with probe(G, ['L13', 'input']) as rec:
        G(torch.randn(1, 8), torch.eye(2)[:1])
    assert rec['synthesis.L13_16_16'].shape == (1, 16, 16, 16) and rec['synthesis.input'].shape == (1, 16, 36, 36)


def test_summary_lists_every_layer(G, G64):
    summary = network_summary(G)
    assert (summary['kind'], summary['architecture'], summary['num_ws']) == ('stylegan3', 'StyleGAN3-T', 16)
    assert [row['name'] for row in summary['layers']] == ['input', *LAYERS_16]
    assert [row['ws_index'] for row in summary['layers']] == list(range(16))
    assert summary['layers'][-1]['kind'] == 'torgb' and summary['layers'][-2]['kind'] == 'critical'
    json.dumps(summary)
    rows = network_summary(G64)['layers']
    assert network_summary(G64)['architecture'] == 'StyleGAN3-R'
    assert sorted({row['sampling_rate'] for row in rows}) == [16.0, 32.0, 64.0]
    assert [row['size'] for row in rows][-3:] == [84, 64, 64]


def test_layer_specs_and_presets(G, G64):
    assert block_owned(G) == block_reads(G) == {'input': [0], **{n: [i + 1] for i, n in enumerate(LAYERS_16)}}
    assert parse_layers(G, 'input,L3') == [0, 4]
    assert parse_layers(G, 'L0-L4') == parse_layers(G, 'L4_36_16-L0') == [1, 2, 3, 4, 5]
    assert parse_layers(G, 'input-L1,15') == [0, 1, 2, 15]
    presets = preset_blocks(G64)
    rates = {row['name']: row['sampling_rate'] for row in network_summary(G64)['layers']}
    assert [{rates[n] for n in presets[k]} for k in ('coarse', 'middle', 'fine')] == [{16.0}, {32.0}, {64.0}]
    assert presets['coarse'][0] == 'input' and presets['fine'][-1].startswith('L14_')
    assert parse_layers(G64, 'coarse,middle,fine') == list(range(16))
    assert styles_caption(G64, 'coarse', parse_layers(G64, 'coarse')).startswith('coarse: ws 0-')
    for bad, message in [('b4', 'layers: input, L0_36_16'), ('L15', "no layer 'L15'"), ('x', 'short names like L3'),
                         ('0-16', 'valid: 0-15')]:
        with pytest.raises(stylelens.StylelensError, match=message):
            parse_layers(G, bad)


@pytest.mark.parametrize('styles', [[0, 1, 2, 3], [5, 6], [15]])
def test_mixing_grid_cells_equal_plain_synthesis(G, styles):
    """Cells reuse the leading layers' outputs of the source they share them with; the images are those of
    a plain forward of the mixed ws."""
    ws = seeds_to_ws(G, [1, 2, 3], class_idx=1)
    grid = render_grids(G, ws[:2], ws[1:], [styles], row_labels=['1', '2'], col_labels=['2', '3'], batch_size=3)[0]
    for r in range(2):
        for c in range(2):
            mixed = ws[r].clone()
            mixed[styles] = ws[1 + c][styles]
            expected = to_uint8(synthesize(G, mixed[None]))[0]
            assert np.abs(grid.cells[r, c].numpy().astype(int) - expected.astype(int)).max() <= 1


def test_activations_dump_every_layer(G, tmp_path):
    files = dump_activations(G, [3], tmp_path, layers=['L2.affine'], class_idx=0, pngs=True)
    names = set(files)
    assert {'seed0003/input.npz', 'seed0003/L0_36_16.npz', 'seed0003/L14_16_3.npz', 'seed0003/L14_16_3_rgb.png',
            'seed0003/L2_36_16.affine.npz', 'seed0003/overview.png'} <= names
    last = np.load(tmp_path / 'seed0003' / 'L14_16_3.npz')
    image = synthesize(G, seeds_to_ws(G, [3], class_idx=0)).numpy()
    np.testing.assert_allclose(last['img'], image, rtol=0, atol=1e-6)
    np.testing.assert_allclose(last['x'] * G.synthesis.output_scale, image, rtol=0, atol=1e-6)
    assert np.load(tmp_path / 'seed0003' / 'input.npz')['x'].shape == (1, 16, 36, 36)
    selected = dump_activations(G, [3], tmp_path / 'some', blocks=['L0', 'input'], class_idx=0, pngs=False)
    assert sorted(selected) == ['seed0003/L0_36_16.npz', 'seed0003/input.npz']


def test_input_transform(G):
    assert stylelens.with_input_transform is with_input_transform
    moved = with_input_transform(G, (0.0, 0.0), 0.0)
    assert torch.equal(moved.synthesis.input.transform, torch.eye(3)) and moved.mapping.fc0 is not G.mapping.fc0
    assert moved.mapping.fc0.weight is G.mapping.fc0.weight and not torch.equal(G.synthesis.input.transform,
                                                                                 torch.eye(3))
    ws = seeds_to_ws(G, [0], class_idx=0)
    assert not torch.equal(synthesize(with_input_transform(G, (0.25, 0.0)), ws), synthesize(moved, ws))
    with pytest.raises(stylelens.StylelensError, match='need an alias-free StyleGAN3 generator'):
        with_input_transform(tiny_networks()['G_ema'], (0.1, 0.0))


# ------------------------------------------------------------------------------------------------ CLI on oracle


def test_info_cli(oracle_dir, tmp_path):
    result = run_stylelens('info', '--network', str(oracle_dir / 'sg3t_cond32.pkl'), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'G StyleGAN3-T, D resnet' in result.stdout and 'L14_32_3      15' in result.stdout
    result = run_stylelens('info', '--network', str(oracle_dir / 'sg3r_32.pkl'), '--json', cwd=tmp_path)
    summary = json.loads(result.stdout)
    assert summary['architecture'] == 'StyleGAN3-R' and len(summary['layers']) == 16


def test_generate_cli_translated_and_rotated(oracle_dir, tmp_path):
    """gen_images.py --translate 0.1,-0.05 --rotate 3 at psi 1 gives the oracle's translated images."""
    result = run_stylelens('generate', '--network', str(oracle_dir / 'sg3r_32.pkl'), '--seeds', '0-3',
                           '--translate', '0.1,-0.05', '--rotate', '3', '--outdir', 'out', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = to_uint8(torch.from_numpy(np.load(oracle_dir / 'sg3r_32.ref.npz')['img_const_psi1_translated']))
    for seed in range(4):
        image = np.asarray(Image.open(tmp_path / 'out' / f'seed{seed:04d}.png')).astype(int)
        assert np.abs(image - expected[seed].astype(int)).max() <= 1
    manifest = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert manifest['options']['translate'] == [0.1, -0.05] and manifest['options']['rotate'] == 3.0
    result = run_stylelens('generate', '--network', str(oracle_dir / 'sg2_cond32.pkl'), '--seeds', '0',
                           '--class', '1', '--rotate', '5', '--outdir', 'refused', cwd=tmp_path)
    assert result.returncode != 0 and 'StyleGAN3' in result.stderr and 'Traceback' not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / 'refused').exists()


def test_mix_and_activations_cli(oracle_dir, tmp_path):
    network = str(oracle_dir / 'sg3r_32.pkl')
    result = run_stylelens('mix', '--network', network, '--rows', '0,1,2', '--cols', '3,4', '--styles', '0-3',
                           '--outdir', 'mix', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ref = np.load(oracle_dir / 'sg3r_32.ref.npz')
    expected = to_uint8(torch.from_numpy(ref['mix_grid'].reshape(-1, *ref['mix_grid'].shape[2:]))).reshape(3, 2, 32,
                                                                                                           32, 3)
    for r, row in enumerate([0, 1, 2]):
        for c, col in enumerate([3, 4]):
            cell = np.asarray(Image.open(tmp_path / 'mix' / f'{row}-{col}.png')).astype(int)
            assert np.abs(cell - expected[r, c].astype(int)).max() <= 1
    result = run_stylelens('activations', '--network', network, '--seeds', '0', '--blocks', 'input,L0,L14',
                           '--no-pngs', '--outdir', 'act', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / 'act' / 'seed0000' / 'L0_36_64.npz')['x'], ref['layer.L0_36_64'],
                               rtol=0, atol=1e-4)
