"""Style mixing: the block map, layer specs, donors, batched grids, and the CLI against style_mixing.py's output."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

import stylelens
from conftest import tiny_networks
from stylelens.generation import seeds_to_ws, synthesize
from stylelens.mixing import (
    Donor,
    block_owned,
    block_reads,
    count_renders,
    mix_donors,
    mix_ws,
    parse_layers,
    preset_blocks,
    render_grids,
    shared_prefix,
)
from stylelens.outputs import to_uint8


@pytest.mark.parametrize('arch', ['orig', 'skip', 'resnet'])
@pytest.mark.parametrize('res', [16, 32])
def test_owned_indices_partition_the_ws(arch, res):
    G = tiny_networks(g_architecture=arch, img_resolution=res)['G_ema']
    owned = block_owned(G)
    flat = [i for idx in owned.values() for i in idx]
    assert flat == list(range(G.num_ws))
    assert owned['b4'] == [0] and owned['b8'] == [1, 2]
    reads = block_reads(G)
    for name, idx in owned.items():
        assert set(idx) <= set(reads[name])


def test_reads_match_the_official_block_mapping(oracle_dir):
    meta = json.loads((oracle_dir / 'sg2_uncond64.json').read_text())
    G = stylelens.load_generator(oracle_dir / 'sg2_uncond64.pkl')
    assert block_reads(G) == {k: v['ws_indices'] for k, v in meta['block_ws_mapping'].items()}


def test_layer_specs():
    G = tiny_networks(img_resolution=64, channel_base=512, channel_max=16)['G_ema']
    assert G.num_ws == 10
    assert parse_layers(G, '0-3,7') == [0, 1, 2, 3, 7]
    assert parse_layers(G, 'b4,b8') == [0, 1, 2]
    assert parse_layers(G, 'b16-b64') == [3, 4, 5, 6, 7, 8, 9]
    assert parse_layers(G, 'b64-b16') == parse_layers(G, 'b16-b64')
    assert preset_blocks(G) == {'coarse': ['b4', 'b8'], 'middle': ['b16', 'b32'], 'fine': ['b64']}
    assert parse_layers(G, 'coarse,fine') == [0, 1, 2, 7, 8, 9]
    for bad, message in [('b128', 'blocks: b4, b8, b16, b32, b64'), ('0-10', 'valid: 0-9'), ('x', 'presets'),
                         ('3-1', 'backwards'), ('1,,2', 'empty')]:
        with pytest.raises(stylelens.StylelensError, match=message):
            parse_layers(G, bad)


def test_donors_and_overlaps():
    base, a, b = torch.zeros([10, 4]), torch.ones([10, 4]), torch.full([10, 4], 2.0)
    mixed = mix_ws(base, [Donor('a', a, [0, 1]), Donor('b', b, [5])])
    assert mixed[:, 0].tolist() == [1, 1, 0, 0, 0, 2, 0, 0, 0, 0]
    with pytest.raises(stylelens.StylelensError, match="'a' and 'b' both supply ws 1"):
        mix_ws(base, [Donor('a', a, [0, 1]), Donor('b', b, [1, 2])])


def test_mix_donors_renders_base_donors_and_mix():
    G = tiny_networks()['G_ema']
    result = mix_donors(G, '1', ['b4=seed:2', 'b8=seed:3'])
    ws = seeds_to_ws(G, [1, 2, 3])
    donors = [Donor('2', ws[1], parse_layers(G, 'b4')), Donor('3', ws[2], parse_layers(G, 'b8'))]
    assert result.base == '1' and [(d.label, d.layers) for d in result.donors] == [('2', [0]), ('3', [1, 2])]
    expected = to_uint8(synthesize(G, torch.stack([ws[0], ws[1], ws[2], mix_ws(ws[0], donors)])))
    assert np.array_equal(result.images, expected)
    for spec, message in [('b4=x:1', "bad --source 'b4=x:1'"), ('b4=seed:1,2', 'names 2 latents')]:
        with pytest.raises(stylelens.StylelensError, match=message):
            mix_donors(G, '1', [spec])
    with pytest.raises(stylelens.StylelensError, match='--base must be one seed'):
        mix_donors(G, '1,2', ['b4=seed:3'])


def test_grids_render_each_image_once_in_batches():
    G = tiny_networks()['G_ema']
    ws = G.mapping(torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(1)), None)
    calls = []
    grids = render_grids(G, ws[:2], ws[1:], [[0], [1, 2]], row_labels=['a', 'b'], col_labels=['b', 'c'],
                         batch_size=4, progress=calls.append)
    assert sum(calls) == count_renders(['a', 'b'], ['b', 'c'], 2) == 3 + 2 * 3
    assert len(calls) == 3  # ceil(9 / 4) forward passes
    first, second = grids
    assert torch.equal(first.cells[1, 0], first.rows[1])  # row b, column b: the source itself
    single = render_grids(G, ws[:1], ws[2:], [[1, 2]], row_labels=['a'], col_labels=['c'], batch_size=1)[0]
    assert torch.equal(second.cells[0, 1], single.cells[0, 0])


def run(*args, cwd):
    return subprocess.run(['stylelens', *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize('fixture,extra', [('sg2_uncond64', []), ('sg2_cond32', ['--class', '0']),
                                           ('sg3_sg2_64', [])])
def test_mix_cli_matches_style_mixing_py(oracle_dir, tmp_path, fixture, extra):
    result = run('mix', '--network', str(oracle_dir / f'{fixture}.pkl'), '--rows', '0,1,2', '--cols', '3,4',
                 '--styles', '0-3', '--batch', '4', '--outdir', 'out', *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ref = np.load(oracle_dir / f'{fixture}.ref.npz')
    expected = ref['mix_grid_uint8'] if 'mix_grid_uint8' in ref else \
        np.clip(np.transpose(ref['mix_grid'], (0, 1, 3, 4, 2)) * 127.5 + 128, 0, 255).astype(np.uint8)
    for r, row in enumerate([0, 1, 2]):
        for c, col in enumerate([3, 4]):
            cell = np.asarray(Image.open(tmp_path / 'out' / f'{row}-{col}.png')).astype(int)
            assert np.abs(cell - expected[r, c].astype(int)).max() <= 1
    grid = Image.open(tmp_path / 'out' / 'grid.png')
    size = expected.shape[2]
    assert grid.size == (3 * size, 4 * size)
    assert np.asarray(grid)[:size, :size].max() == 0
    manifest = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert manifest['extra']['ws_indices'] == [0, 1, 2, 3] and manifest['network']['sha256']


def test_mix_cli_modes_and_errors(tmp_path):
    G = stylelens.load_generator('demo')
    np.save(tmp_path / 'proj.npy', G.mapping(torch.randn([2, G.z_dim]), None).numpy())
    result = run('mix', '--rows', '1,w:proj.npy', '--cols', '2,3', '--blocks', 'b4,b8', '--labels',
                 '--outdir', 'grid', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = {p.name for p in (tmp_path / 'grid').iterdir()}
    assert {'grid.png', 'grid_labeled.png', 'manifest.json', '1-2.png', 'proj.1-3.png', 'proj.0-proj.0.png',
            '3-3.png'} <= names
    result = run('mix', '--base', '85', '--source', 'b4,b8=seed:12', '--source', 'b16-b32=w:proj.npy',
                 '--outdir', 'donors', cwd=tmp_path)
    assert result.returncode != 0 and 'exactly one' in result.stderr
    result = run('mix', '--base', '85', '--source', 'b4,b8=seed:12', '--source', 'b16-b32=w:proj.npy@1',
                 '--outdir', 'donors', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {'base.png', 'donor0_12.png', 'donor1_proj.1.png', 'mix.png', 'strip.png'} <= \
        {p.name for p in (tmp_path / 'donors').iterdir()}
    result = run('mix-study', '--rows', '1,2', '--cols', '3', '--block-sets', 'b4;b8,b16;fine', '--outdir', 'study',
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'study' / 'study.png').is_file() and (tmp_path / 'study' / 'set2_fine' / 'grid.png').is_file()
    np.save(tmp_path / 'bad.npy', np.zeros([2, 7], dtype=np.float32))
    for args, message in [(['--rows', '1', '--cols', '2', '--blocks', 'b4,b9'], 'blocks: b4, b8, b16, b32)'),
                          (['--rows', '1', '--cols', '2', '--styles', '0-12'], 'valid: 0-7'),
                          (['--rows', '1', '--cols', 'w:bad.npy'], 'w_dim'),
                          (['--base', '1', '--source', 'b4,b8=seed:2', '--source', 'b8=seed:3'], 'both supply'),
                          (['--rows', '1', '--cols', '2', '--styles', '0', '--preset', 'fine'], 'only one')]:
        result = run('mix', *args, '--outdir', 'err', cwd=tmp_path)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert 'Traceback' not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / 'err').exists(), 'bad input must leave no output folder behind'
    result = run('mix-study', '--rows', '1', '--cols', 'w:bad.npy', '--block-sets', 'b4', '--outdir', 'err',
                 cwd=tmp_path)
    assert result.returncode != 0 and 'w_dim' in result.stderr and not (tmp_path / 'err').exists()


@pytest.mark.parametrize('arch', ['orig', 'skip', 'resnet'])
def test_grid_cells_equal_full_synthesis_of_the_mixed_ws(arch):
    """Cells resume from a source's shared feature maps; they must equal synthesizing the mixed ws from scratch."""
    G = tiny_networks(g_architecture=arch, img_resolution=32)['G_ema']
    ws = G.mapping(torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(2)), None)
    style_sets = [[0, 1, 2], list(range(5, G.num_ws)), [2, 3]]
    assert [shared_prefix(G, s) for s in style_sets] == [('col', 2), ('row', 3), ('row', 1)]
    grids = render_grids(G, ws[:2], ws[2:], style_sets, row_labels=['a', 'b'], col_labels=['c', 'd'], batch_size=3)
    for grid, styles in zip(grids, style_sets):
        for r in range(2):
            for c in range(2):
                mixed = mix_ws(ws[r], [Donor('col', ws[2 + c], styles)])
                expected = to_uint8(G.synthesis(mixed[None], noise_mode='const'))[0].astype(int)
                assert np.abs(grid.cells[r, c].numpy().astype(int) - expected).max() <= 1
