"""Snapshot round trips through the official layout: dump_snapshot -> safe loader -> rebuilt vendor modules.

Every G architecture x D architecture, conditional and not, with 1, 3 and 4 image channels, in pickle protocols
4 and 3, must come back bit-for-bit and compute exactly what the original modules compute.
"""
from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch

import stylelens
from conftest import tiny_networks, tiny_snapshot, tiny_snapshot_path
from stylelens.summary import network_summary

ARCHITECTURES = ('orig', 'skip', 'resnet')
Z_DIM = 16
C_DIM = 3
BATCH = 4


def latents(c_dim: int, batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed z [batch, Z_DIM] and c (one-hot classes 0, 1, 2, 0, ... or an empty [batch, 0])."""
    z = torch.randn(batch, Z_DIM, generator=torch.Generator().manual_seed(123))
    c = torch.eye(c_dim)[torch.arange(batch) % c_dim] if c_dim else torch.zeros(batch, 0)
    return z, c


def assert_same_tensors(actual: torch.nn.Module, expected: torch.nn.Module) -> None:
    """Same state_dict keys in the same order, same dtypes and shapes, identical bits."""
    got, want = actual.state_dict(), expected.state_dict()
    assert list(got) == list(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(got[name].view(torch.int32), tensor.view(torch.int32)), name


def assert_one_line(err: pytest.ExceptionInfo) -> str:
    assert isinstance(err.value, stylelens.StylelensError)
    message = str(err.value)
    assert message and '\n' not in message
    return message


def refusals(path: Path) -> list[str]:
    """The one-line message each of load_network and load_generator refuses `path` with."""
    messages = []
    for load in (stylelens.load_network, stylelens.load_generator):
        with pytest.raises(stylelens.StylelensError) as err:
            load(path)
        messages.append(assert_one_line(err))
    return messages


# Every G x D architecture pair, conditional and unconditional. The image channels rotate through 1, 3, 4 so that
# each architecture of G and of D (with and without labels) meets every channel count, in 18 cases instead of 54.
ROUND_TRIPS = [(g, d, c_dim, (1, 3, 4)[(gi + di + ci) % 3])
               for gi, g in enumerate(ARCHITECTURES) for di, d in enumerate(ARCHITECTURES)
               for ci, c_dim in enumerate((0, C_DIM))]


@pytest.mark.parametrize('g_arch,d_arch,c_dim,img_channels', ROUND_TRIPS,
                         ids=[f'G-{g}-D-{d}-c{c}-ch{ch}' for g, d, c, ch in ROUND_TRIPS])
def test_round_trip(tmp_path, g_arch, d_arch, c_dim, img_channels):
    snapshot = tiny_snapshot(g_architecture=g_arch, d_architecture=d_arch, c_dim=c_dim, img_channels=img_channels)
    z, c = latents(c_dim)
    expected_images = {k: snapshot[k](z, c, noise_mode='const') for k in ('G', 'G_ema')}
    assert expected_images['G_ema'].shape == (BATCH, img_channels, 16, 16)
    expected_logits = snapshot['D'](expected_images['G_ema'], c)

    for protocol in (4, 3):
        path = tiny_snapshot_path(tmp_path, name=f'p{protocol}.pkl', protocol=protocol, snapshot=snapshot)
        assert path.read_bytes()[:2] == bytes([pickle.PROTO[0], protocol])
        loaded = stylelens.load_network(path)

        assert set(loaded) == {'G', 'D', 'G_ema', 'training_set_kwargs', 'augment_pipe'}
        assert loaded['augment_pipe'] is None
        assert loaded['training_set_kwargs'] == snapshot['training_set_kwargs']
        for key in ('G', 'D', 'G_ema'):
            assert type(loaded[key]).__name__ == type(snapshot[key]).__name__
            assert loaded[key] is not snapshot[key]
            assert_same_tensors(loaded[key], snapshot[key])
        for key in ('G', 'G_ema'):
            assert torch.equal(loaded[key](z, c, noise_mode='const'), expected_images[key]), key
        assert torch.equal(loaded['D'](expected_images['G_ema'], c), expected_logits)


@pytest.fixture(scope='module')
def conditional(tmp_path_factory):
    """(original modules, loaded G_ema) of a conditional skip generator."""
    snapshot = tiny_snapshot(c_dim=C_DIM)
    path = tiny_snapshot_path(tmp_path_factory.mktemp('cond'), snapshot=snapshot)
    return snapshot, stylelens.load_generator(path)


def test_truncation_cutoff_truncates_only_the_first_ws(conditional):
    _, G = conditional
    z, c = latents(C_DIM)
    w_avg = G.mapping.w_avg
    assert w_avg.abs().min() > 0
    plain = G.mapping(z, c)
    assert plain.shape == (BATCH, G.num_ws, G.w_dim)

    everywhere = G.mapping(z, c, truncation_psi=0.5)
    torch.testing.assert_close(everywhere, w_avg + 0.5 * (plain - w_avg))
    for cutoff in (1, 3, G.num_ws):
        ws = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=cutoff)
        torch.testing.assert_close(ws[:, :cutoff], everywhere[:, :cutoff], rtol=0, atol=0)
        assert torch.equal(ws[:, cutoff:], plain[:, cutoff:])
        assert not torch.allclose(ws[:, :cutoff], plain[:, :cutoff])
        assert torch.equal(G(z, c, truncation_psi=0.5, truncation_cutoff=cutoff, noise_mode='const'),
                           G.synthesis(ws, noise_mode='const'))
    average = G.mapping(z, c, truncation_psi=0, truncation_cutoff=2)
    assert torch.equal(average[:, :2], w_avg.expand(BATCH, 2, -1))


def test_noise_modes(conditional):
    _, G = conditional
    z, c = latents(C_DIM)
    const = G(z, c, noise_mode='const')
    none = G(z, c, noise_mode='none')
    assert torch.equal(G(z, c, noise_mode='const'), const)
    assert (const - none).abs().max() > 1e-4  # the perturbed noise_strength values are non-zero

    torch.manual_seed(7)
    random1 = G(z, c, noise_mode='random')
    torch.manual_seed(7)
    random2 = G(z, c, noise_mode='random')
    assert torch.equal(random1, random2)
    assert (random1 - const).abs().max() > 1e-4
    torch.manual_seed(8)
    assert not torch.equal(G(z, c, noise_mode='random'), random1)

    silent = copy.deepcopy(G)
    for name, param in silent.named_parameters():
        if name.endswith('noise_strength'):
            param.zero_()
    assert torch.equal(silent(z, c, noise_mode='const'), silent(z, c, noise_mode='none'))
    assert torch.equal(silent(z, c, noise_mode='none'), none)


def test_load_generator_returns_g_ema_in_eval_mode_without_gradients(conditional):
    snapshot, G = conditional
    assert type(G).__name__ == 'Generator'
    assert_same_tensors(G, snapshot['G_ema'])
    assert not torch.equal(G.mapping.w_avg, snapshot['G'].mapping.w_avg)  # G and G_ema were perturbed apart
    assert not any(m.training for m in G.modules())
    assert not any(p.requires_grad for p in G.parameters())


# ------------------------------------------------------------------------------------------------ errors

class Mystery(torch.nn.Module):
    """A module that records its init args like official modules, but is no network stylelens knows."""

    def __init__(self, width: int = 3):
        super().__init__()
        self._init_args = ()
        self._init_kwargs = dict(width=width)
        self.weight = torch.nn.Parameter(torch.ones(width))


def test_unknown_top_level_class_is_named(tmp_path):
    nets = tiny_networks()
    snapshot = dict(G=Mystery(), D=nets['D'], G_ema=Mystery(), augment_pipe=None, training_set_kwargs={})
    path = tiny_snapshot_path(tmp_path, snapshot=snapshot)
    for message in refusals(path):
        assert 'Mystery' in message
        assert 'Generator' in message and 'Discriminator' in message


def test_tensor_shape_mismatch_names_tensor_and_both_shapes(tmp_path):
    snapshot = tiny_snapshot()
    layer = snapshot['G_ema'].synthesis.b8.conv1
    right = list(layer.weight.shape)
    wrong = right[:2] + [5, 5]
    layer.weight = torch.nn.Parameter(torch.zeros(wrong), requires_grad=False)
    path = tiny_snapshot_path(tmp_path, snapshot=snapshot)
    for message in refusals(path):
        assert 'G_ema.synthesis.b8.conv1.weight' in message
        assert str(wrong) in message and str(right) in message


def test_plain_dict_pickle_without_networks(tmp_path):
    path = tmp_path / 'options.pkl'
    path.write_bytes(pickle.dumps({'lr': 0.002, 'batch_size': 32}, protocol=4))
    for message in refusals(path):
        assert 'not a network snapshot' in message
        assert 'G_ema' in message and 'lr' in message and 'batch_size' in message


# ------------------------------------------------------------------------------------------------ summary vs oracle

@pytest.mark.parametrize('fixture', ['sg2_uncond64', 'sg2_cond32'])
def test_summary_ws_indices_match_oracle_block_mapping(oracle_dir, fixture):
    meta = json.loads((oracle_dir / f'{fixture}.json').read_text())
    summary = network_summary(stylelens.load_generator(oracle_dir / f'{fixture}.pkl'))
    assert summary['num_ws'] == meta['num_ws']
    blocks = {b['name']: b for b in summary['blocks']}
    assert list(blocks) == list(meta['block_ws_mapping'])
    for name, expected in meta['block_ws_mapping'].items():
        assert blocks[name]['ws_indices'] == expected['ws_indices'], name
        assert blocks[name]['architecture'] == expected['architecture'], name
        convs = [layer for layer in blocks[name]['layers'] if layer.startswith('conv')]
        assert len(convs) == expected['num_conv'], name
        assert ('torgb' in blocks[name]['layers']) == bool(expected['num_torgb']), name


def test_pickles_from_older_pytorch_without_newer_hook_dicts_load(tmp_path):
    """Module states written by older PyTorch versions lack the newer hook dictionaries; they must still load."""
    snapshot = tiny_snapshot()
    expected = {k: v.clone() for k, v in snapshot['G_ema'].state_dict().items()}
    newer_keys = ('_backward_pre_hooks', '_forward_hooks_with_kwargs', '_forward_hooks_always_called',
                  '_forward_pre_hooks_with_kwargs', '_state_dict_pre_hooks', '_load_state_dict_post_hooks',
                  '_is_full_backward_hook', '_non_persistent_buffers_set')
    for key in ('G', 'D', 'G_ema'):
        for module in snapshot[key].modules():
            for name in newer_keys:
                module.__dict__.pop(name, None)
    path = tiny_snapshot_path(tmp_path, snapshot=snapshot, protocol=3)
    G = stylelens.load_generator(path)
    assert all(torch.equal(G.state_dict()[k], v) for k, v in expected.items())
