"""StyleGAN3 networks: geometry of the published configurations, snapshot round trips through the official layout
(defaults read back, structure checked), the forward-pass conventions, and the refusals."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

import stylelens
from stylelens.loading.official_writer import dump_snapshot
from stylelens.loading.rebuild import rebuild
from stylelens.loading.safe_pickle import load_snapshot
from stylelens.vendor.stylegan3.networks import Generator

# Layer names of NVIDIA's published 1024x1024 StyleGAN3-T and -R generators (train.py doubles R's channels).
PUBLISHED_1024 = {
    'T': ['L0_36_512', 'L1_36_512', 'L2_52_512', 'L3_52_512', 'L4_84_512', 'L5_148_512', 'L6_148_512', 'L7_276_323',
          'L8_276_203', 'L9_532_128', 'L10_1044_81', 'L11_1044_51', 'L12_1044_32', 'L13_1024_32', 'L14_1024_3'],
    'R': ['L0_36_1024', 'L1_36_1024', 'L2_52_1024', 'L3_52_1024', 'L4_84_1024', 'L5_148_1024', 'L6_148_1024',
          'L7_276_645', 'L8_276_406', 'L9_532_256', 'L10_1044_161', 'L11_1044_102', 'L12_1044_64', 'L13_1024_64',
          'L14_1024_3'],
}
R_OPTIONS = dict(conv_kernel=1, use_radial_filters=True)


@pytest.mark.parametrize('config', ['T', 'R'])
def test_published_1024_geometry_and_size(config):
    """The paper's FFHQ-1024 generators: 22.3 M (T) and 15.1 M (R) parameters, built on the meta device."""
    options = dict(R_OPTIONS, channel_base=65536, channel_max=1024) if config == 'R' else {}
    with torch.device('meta'):
        G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, **options)
    assert G.synthesis.layer_names == PUBLISHED_1024[config] and G.num_ws == 16
    assert round(sum(p.numel() for p in G.parameters()) / 1e5) / 10 == {'T': 22.3, 'R': 15.1}[config]
    radial = [n for n in G.synthesis.layer_names if getattr(G.synthesis, n).down_radial]
    assert radial == (PUBLISHED_1024['R'][:-3] if config == 'R' else [])
    assert tuple(getattr(G.synthesis, radial[0]).down_filter.shape) == (12, 12) if radial else True


def tiny_sg3(seed: int = 0, **options) -> Generator:
    """A tiny StyleGAN3 generator with every parameter and buffer moved off its init value (filters made
    non-symmetric), in eval mode without gradients."""
    c_dim = options.pop('c_dim', 0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=options.pop('img_resolution', 16),
                      img_channels=options.pop('img_channels', 3), channel_base=512, channel_max=16, **options)
        with torch.no_grad():
            for name, tensor in [*G.named_parameters(), *G.named_buffers()]:
                noise = torch.randn(tensor.shape)
                tensor.mul_(1 + 0.05 * noise) if name.endswith('filter') or name.endswith('magnitude_ema') \
                    else tensor.add_(0.1 * noise)
    return G.eval().requires_grad_(False)


def snapshot_path(tmp_path, G, protocol=4):
    path = tmp_path / f'sg3_p{protocol}.pkl'
    dump_snapshot(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=dict(resolution=16)), path,
                  protocol=protocol)
    return path


ROUND_TRIPS = {
    'T': {}, 'R-conditional-64': dict(R_OPTIONS, c_dim=3, img_resolution=64),
    'T-1-channel': dict(img_channels=1),
    'custom': dict(num_layers=8, num_critical=1, margin_size=6, conv_clamp=None, num_fp16_res=0, filter_size=4,
                   output_scale=0.5, first_cutoff=3, mapping_kwargs=dict(num_layers=3, w_avg_beta=0.99)),
}


@pytest.mark.parametrize('name', list(ROUND_TRIPS))
def test_snapshot_round_trip(tmp_path, name):
    G = tiny_sg3(**dict(ROUND_TRIPS[name]))
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    c = torch.eye(G.c_dim)[:3] if G.c_dim else torch.zeros(3, 0)
    expected = G(z, c, truncation_psi=0.7)
    for protocol in (4, 3):
        loaded = stylelens.load_network(snapshot_path(tmp_path, G, protocol))
        for key in ('G', 'G_ema'):
            assert type(loaded[key]) is Generator and loaded[key].synthesis.layer_names == G.synthesis.layer_names
            assert list(loaded[key].state_dict()) == list(G.state_dict())
            assert all(torch.equal(a, b) for a, b in zip(loaded[key].state_dict().values(), G.state_dict().values()))
            assert torch.equal(loaded[key](z, c, truncation_psi=0.7), expected)
        assert loaded.get('D') is None
    assert type(stylelens.load_generator(snapshot_path(tmp_path, G))) is Generator


def test_defaults_left_out_of_init_kwargs_are_read_back(tmp_path):
    """Snapshots record only the kwargs given; a network whose defaults differ from ours still rebuilds exactly."""
    G = tiny_sg3(num_layers=8, margin_size=6, filter_size=4, conv_clamp=64, magnitude_ema_beta=0.5, num_fp16_res=1)
    snapshot = load_snapshot(snapshot_path(tmp_path, G))
    snapshot['G_ema'].state['_init_kwargs'] = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                                                   channel_base=512, channel_max=16)
    rebuilt = rebuild(snapshot['G_ema'], 'G_ema')
    for attr in ('num_layers', 'margin_size', 'num_fp16_res'):
        assert getattr(rebuilt.synthesis, attr) == getattr(G.synthesis, attr)
    layer = getattr(rebuilt.synthesis, rebuilt.synthesis.layer_names[0])
    assert (layer.conv_clamp, layer.magnitude_ema_beta, layer.up_taps) == (64, 0.5, 8)
    z = torch.randn(2, 8)
    assert torch.equal(rebuilt(z, None), G(z, None))


def test_geometry_disagreement_is_one_clear_line(tmp_path):
    snapshot = load_snapshot(snapshot_path(tmp_path, tiny_sg3()))
    layer = snapshot['G_ema'].state['_modules']['synthesis'].state['_modules']['L3_36_16']
    layer.state['out_cutoff'] = layer.state['out_cutoff'] * 1.01
    with pytest.raises(stylelens.StylelensError) as err:
        rebuild(snapshot['G_ema'], 'G_ema')
    assert 'G_ema.synthesis.L3_36_16.out_cutoff' in str(err.value) and '\n' not in str(err.value)


def test_numpy_arrays_in_module_state_are_read_safely(tmp_path):
    """SynthesisLayer.in_size and friends are numpy arrays in official pickles: read as plain arrays, while an
    array of Python objects is refused."""
    path = snapshot_path(tmp_path, tiny_sg3())
    layer = load_snapshot(path)['G_ema'].state['_modules']['synthesis'].state['_modules']['L0_36_16']
    assert type(layer.state['in_size']) is np.ndarray and layer.state['in_size'].tolist() == [36, 36]
    plain = {'a': np.arange(6.0).reshape(2, 3), 'b': np.asfortranarray(np.eye(3, dtype=np.int16)[:, :2])}
    for protocol in (3, 4):
        loaded = load_snapshot(io.BytesIO(pickle.dumps(plain, protocol=protocol)))
        assert all(np.array_equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in plain.items())
    hostile = pickle.dumps(np.array([1, 'a'], dtype=object), protocol=4)
    with pytest.raises(stylelens.StylelensError) as err:
        load_snapshot(io.BytesIO(hostile))
    assert 'object' in str(err.value) and '\n' not in str(err.value)


def test_forward_conventions():
    G = tiny_sg3(c_dim=2)
    z, c = torch.randn(2, 8), torch.eye(2)
    ws = G.mapping(z, c)
    cut = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=3)
    assert torch.equal(cut[:, 3:], ws[:, 3:]) and not torch.equal(cut[:, :3], ws[:, :3])
    images = {mode: G.synthesis(ws, noise_mode=mode, force_fp32=True) for mode in ('const', 'none', 'random')}
    assert images['const'].shape == (2, 3, 16, 16) and images['const'].is_contiguous()
    assert all(torch.equal(images['const'], img) for img in images.values())  # StyleGAN3 has no noise inputs
    with pytest.raises(ValueError, match='noise_mode'):
        G.synthesis(ws, noise_mode='fresh')
    with pytest.raises(ValueError, match=r'ws must have shape \[N, 16, 8\]'):
        G.synthesis(ws[:, :3])
    single = torch.cat([G.synthesis(ws[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(single, images['const'], rtol=0, atol=1e-5)  # batching changes rounding only
    before = [G.mapping.w_avg.clone(), G.synthesis.L0_36_16.magnitude_ema.clone()]
    G(z, c, update_emas=True)
    assert not torch.equal(G.mapping.w_avg, before[0]) and not torch.equal(G.synthesis.L0_36_16.magnitude_ema,
                                                                           before[1])
