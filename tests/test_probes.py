"""Probes: hook names per architecture, recording, caching, editing, and hooks always removed."""
from __future__ import annotations

import pytest
import torch

import stylelens
from conftest import tiny_networks
from stylelens.probes import (
    edit,
    hook_names,
    probe,
    replace_with,
    resolve_name,
    run_with_cache,
    scale_channels,
    zero_channels,
)

SYNTH_LAYERS = {'orig': ['conv0', 'conv1'], 'skip': ['conv0', 'conv1', 'torgb'], 'resnet': ['conv0', 'conv1']}


def expected_generator_names(arch: str, c_dim: int = 0, mapping_layers: int = 2) -> list[str]:
    """The official module tree of a 16x16 generator, written out by hand so renames never slip through."""
    names = ['synthesis', 'synthesis.b4', 'synthesis.b4.conv1', 'synthesis.b4.conv1.affine']
    if arch == 'skip':
        names += ['synthesis.b4.torgb', 'synthesis.b4.torgb.affine']
    for res in (8, 16):
        block = f'synthesis.b{res}'
        names += [block, f'{block}.conv0', f'{block}.conv0.affine', f'{block}.conv1', f'{block}.conv1.affine']
        if arch == 'skip' or res == 16:
            names += [f'{block}.torgb', f'{block}.torgb.affine']
        if arch == 'resnet':
            names += [f'{block}.skip']
    names += ['mapping'] + (['mapping.embed'] if c_dim else []) + [f'mapping.fc{i}' for i in range(mapping_layers)]
    return names


def expected_discriminator_names(arch: str, c_dim: int = 0) -> list[str]:
    names = []
    for res in (16, 8):
        block = f'b{res}'
        names += [block] + ([f'{block}.fromrgb'] if res == 16 or arch == 'skip' else [])
        names += [f'{block}.conv0', f'{block}.conv1'] + ([f'{block}.skip'] if arch == 'resnet' else [])
    if c_dim:
        names += ['mapping', 'mapping.embed', 'mapping.fc0', 'mapping.fc1', 'mapping.fc2', 'mapping.fc3',
                  'mapping.fc4', 'mapping.fc5', 'mapping.fc6', 'mapping.fc7']
    names += ['b4'] + (['b4.fromrgb'] if arch == 'skip' else []) + ['b4.mbstd', 'b4.conv', 'b4.fc', 'b4.out']
    return names


@pytest.mark.parametrize('arch', ['orig', 'skip', 'resnet'])
@pytest.mark.parametrize('c_dim', [0, 4])
def test_hook_names_are_the_official_module_tree(arch, c_dim):
    nets = tiny_networks(g_architecture=arch, d_architecture=arch, c_dim=c_dim)
    assert hook_names(nets['G_ema']) == expected_generator_names(arch, c_dim)
    assert hook_names(nets['D']) == expected_discriminator_names(arch, c_dim)


@pytest.fixture(scope='module')
def G():
    return tiny_networks()['G_ema']


def latents(G, n=2):
    return torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(0)), torch.zeros([n, 0])


def test_short_names_and_unknown_names(G):
    assert resolve_name(G, 'b8.conv1') == 'synthesis.b8.conv1'
    assert resolve_name(G, 'fc1') == 'mapping.fc1'
    with pytest.raises(stylelens.StylelensError, match='ambiguous'):
        resolve_name(G, 'affine')
    with pytest.raises(stylelens.StylelensError) as err:
        resolve_name(G, 'synthesis.b8.conv2')
    assert 'synthesis.b8.conv1' in str(err.value) and '\n' not in str(err.value)


def test_probe_records_blocks_as_named_parts(G):
    z, c = latents(G)
    with probe(G, ['b8', 'b8.conv1', 'mapping']) as rec:
        img = G(z, c, noise_mode='const')
    assert set(rec) == {'synthesis.b8', 'synthesis.b8.conv1', 'mapping'}
    assert set(rec['synthesis.b8']) == {'x', 'img'}
    assert rec['synthesis.b8']['x'].shape == (2, 32, 8, 8) and rec['synthesis.b8']['img'].shape == (2, 3, 8, 8)
    assert rec.tensor('synthesis.b8').shape == (2, 32, 8, 8)
    assert rec['mapping'].shape == (2, G.num_ws, G.w_dim)
    assert img.shape == (2, 3, 16, 16)


def test_run_with_cache_matches_plain_forward_and_casts(G):
    z, c = latents(G)
    plain = G(z, c, noise_mode='const')
    img, cache = run_with_cache(G, z, c, noise_mode='const', dtype=torch.float16)
    assert torch.equal(img, plain)
    assert set(cache) == set(hook_names(G))
    assert cache.tensor('synthesis.b16').dtype == torch.float16
    assert torch.allclose(cache.tensor('synthesis.b16', 'img').float(), plain, atol=2e-3)


def test_hooks_are_removed_even_when_the_forward_raises(G):
    with pytest.raises(RuntimeError):
        with probe(G, None):
            G(torch.zeros([1, G.z_dim + 1]), None)
    with pytest.raises(RuntimeError):
        with edit(G, {'b8.conv1': zero_channels(0)}):
            G(torch.zeros([1, G.z_dim + 1]), None)
    assert all(not m._forward_hooks for m in G.modules())


def test_edits_change_the_output_in_flight(G):
    z, c = latents(G)
    plain = G(z, c, noise_mode='const')
    with edit(G, {'b8.conv1': zero_channels(range(32))}), probe(G, ['b8.conv1']) as rec:
        zeroed = G(z, c, noise_mode='const')
    assert torch.count_nonzero(rec['synthesis.b8.conv1']) == 0
    assert not torch.allclose(zeroed, plain)
    with edit(G, {'b8.conv1': scale_channels([0, 1], 1.0)}):
        assert torch.equal(G(z, c, noise_mode='const'), plain)
    with edit(G, {'synthesis.b16': replace_with(torch.zeros([1, 3, 16, 16]))}, part='img'):
        assert torch.count_nonzero(G(z, c, noise_mode='const')) == 0
    with pytest.raises(stylelens.StylelensError, match='channels'):
        with edit(G, {'b8.conv1': zero_channels(99)}):
            G(z, c)


def test_streaming_callback_keeps_nothing(G):
    z, c = latents(G)
    seen = []
    with probe(G, ['b4', 'b16'], on_record=lambda name, value: seen.append(name)) as rec:
        G(z, c)
    assert seen == ['synthesis.b4', 'synthesis.b16'] and not rec
