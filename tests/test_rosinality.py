"""rosinality/stylegan2-pytorch checkpoints: parity with rosinality's own outputs (oracle `ros_32`) for all three file
flavours, the name map against the oracle's, the CLI on such a file, and hostile files refused in one line.

Tolerance: float32 atol 1e-4; uint8 images within 1 level (never bit-exact: the operation order differs).
"""
from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest
import torch
from oracle_helpers import capture, close

import stylelens
from conftest import run_stylelens
from stylelens.errors import StylelensError
from stylelens.loading import rosinality
from stylelens.loading.rosinality_map import discriminator_plan, generator_plan
from stylelens.outputs import to_uint8
from stylelens.vendor.stylegan2_ada.ops import normalize_2nd_moment

FILES = ['ros_32.pt', 'ros_32.conv.pt', 'ros_32.conv.legacy.pt']


@pytest.fixture(scope='module')
def ref(oracle_dir):
    return dict(np.load(oracle_dir / 'ros_32.ref.npz'))


@pytest.fixture(scope='module')
def meta(oracle_dir):
    return json.loads((oracle_dir / 'ros_32.json').read_text())


@pytest.fixture(scope='module', params=FILES)
def case(request, oracle_dir, ref):
    """(file name, networks, w_avg as loaded). train.py's file has no latent_avg, so its w_avg is an estimate; like
    rosinality's callers, who pass truncation_latent explicitly, the tests then truncate by the .conv.pt's latent_avg."""
    nets = stylelens.load_network(oracle_dir / request.param)
    loaded_w_avg = nets['G_ema'].mapping.w_avg.clone()
    nets['G_ema'].mapping.w_avg.copy_(torch.from_numpy(ref['latent_avg']))
    return request.param, nets, loaded_w_avg


def test_w_avg_is_latent_avg_or_a_reproducible_estimate(case, ref):
    name, nets, loaded = case
    if name == 'ros_32.pt':
        assert nets['G'].mapping.w_avg.equal(rosinality.mean_w(nets['G']))
        assert loaded.equal(rosinality.mean_w(nets['G_ema']))
        close(loaded, ref['latent_avg'], atol=0.1)  # two means of 4096 samples of the same mapping
    else:
        assert loaded.equal(torch.from_numpy(ref['latent_avg']))
        assert nets['G'].mapping.w_avg.equal(loaded)
    assert nets['training_set_kwargs'] is None and nets['augment_pipe'] is None


def test_mapping_latents_and_truncation(case, ref):
    _, nets, _ = case
    G = nets['G_ema']
    z = torch.from_numpy(ref['z'])
    ws = G.mapping(z, None)
    close(ws[:, 0], ref['styles_psi1'])
    close(ws, ref['latent_psi1'])
    close(G.mapping(z, None, truncation_psi=0.7), ref['latent_psi07'])
    found = capture(G.mapping, ['fc0', 'fc1'], lambda: G.mapping(z[:1], None))
    close(normalize_2nd_moment(z[:1]), ref['map.style.0'])
    close(found['fc0'], ref['map.style.1'])
    close(found['fc1'], ref['map.style.2'])


@pytest.mark.parametrize('key,psi,noise_mode', [('img_psi1_const', 1, 'const'), ('img_psi1_zeronoise', 1, 'none'),
                                                ('img_psi07_const', 0.7, 'const')])
def test_images(case, ref, key, psi, noise_mode):
    _, nets, _ = case
    close(nets['G_ema'](torch.from_numpy(ref['z']), None, truncation_psi=psi, noise_mode=noise_mode), ref[key])


def test_non_ema_generator(case, ref):
    _, nets, _ = case
    close(nets['G'](torch.from_numpy(ref['z']), None, noise_mode='const'), ref['img_psi1_const_g'])


def test_uint8_images_per_seed(case, ref):
    _, nets, _ = case
    for i in range(len(ref['z'])):
        image = nets['G_ema'](torch.from_numpy(ref['z'][i:i + 1]), None, truncation_psi=0.7, noise_mode='const')
        assert np.abs(to_uint8(image)[0].astype(int) - ref['img_uint8_psi07'][i].astype(int)).max() <= 1


def test_mixing_by_inject_index(case, ref):
    """G([z, z2], inject_index=2): latent indices 0-1 from z, 2-7 from z2."""
    _, nets, _ = case
    G = nets['G_ema']
    ws = G.mapping(torch.from_numpy(ref['z']), None)
    ws[:, 2:] = G.mapping(torch.from_numpy(ref['mix_z2']), None)[:, 2:]
    close(ws, ref['mix_latent_inject2'])
    close(G.synthesis(ws, noise_mode='const'), ref['img_mix_inject2'])


def _synthesis_layer(ros_layer: str) -> tuple[str, int | None]:
    """Our module for a rosinality G layer name, and which output to take (ToRGB outputs include the skip image,
    which is the block's img)."""
    kind, _, index = ros_layer.partition('.')
    if kind == 'conv1':
        return 'b4.conv1', None
    if kind == 'to_rgb1':
        return 'b4', 1
    if kind == 'convs':
        return f'b{2 ** (int(index) // 2 + 3)}.conv{int(index) % 2}', None
    return f'b{2 ** (int(index) + 3)}', 1


def test_per_layer_outputs(case, ref):
    _, nets, _ = case
    G = nets['G_ema']
    keys = [k for k in ref if k.startswith('layer.')]
    modules = {k: _synthesis_layer(k[len('layer.'):]) for k in keys}
    ws = G.mapping(torch.from_numpy(ref['z'][:1]), None)
    images: list = []
    found = capture(G.synthesis, sorted({m for m, _ in modules.values()}),
                    lambda: images.append(G.synthesis(ws, noise_mode='const')))
    close(images[0], ref['layer_run.img'])
    for key, (module, output) in modules.items():
        close(found[module] if output is None else found[module][output], ref[key])


def _d_layer(ros_layer: str, size: int) -> tuple[str, int | None]:
    """Our module for a rosinality D layer name (convs.0 is fromRGB, convs.j >= 1 the residual blocks)."""
    if ros_layer == 'convs.0':
        return f'b{size}.fromrgb', None
    if ros_layer.startswith('convs.'):
        return f'b{size >> (int(ros_layer.split(".")[1]) - 1)}', 0
    return {'final_conv': 'b4.conv', 'final_linear.0': 'b4.fc'}[ros_layer], None


def test_discriminator(case, ref):
    _, nets, _ = case
    D = nets['D']
    keys = [k for k in ref if k.startswith('dlayer.')]
    modules = {k: _d_layer(k[len('dlayer.'):], D.img_resolution) for k in keys}
    logits: list = []
    found = capture(D, sorted({m for m, _ in modules.values()}),
                    lambda: logits.append(D(torch.from_numpy(ref['img_psi1_const']), None)))
    close(logits[0], ref['d_logits'])
    for key, (module, output) in modules.items():
        close((found[module] if output is None else found[module][output])[:1], ref[key])


def test_name_map_and_kwargs_match_the_oracle(case, meta):
    _, nets, _ = case
    for plan, net, key in ((generator_plan(32, 2), 'G_ema', 'G'), (discriminator_plan(32), 'D', 'D')):
        assert {e.ros: e.official for e in plan if e.ros} == {r: o for r, o, _, _ in meta[f'nvidia_name_map_{key}']}
        assert set(nets[net].state_dict()) == {e.official for e in plan} | ({'mapping.w_avg'} if key == 'G' else set())
    order = [e.ros for e in generator_plan(32, 2) if e.ros]
    assert order == [name for name, _, _ in meta['g_ema_state_dict']]
    assert [e.ros for e in discriminator_plan(32) if e.ros] == [name for name, _, _ in meta['d_state_dict']]
    expected = meta['nvidia_equivalent_kwargs']
    assert {k: v for k, v in nets['G_ema']._init_kwargs.items()} == expected['G']
    assert nets['D']._init_kwargs == expected['D']


def test_cli_info_and_generate(oracle_dir, ref, tmp_path):
    info = run_stylelens('info', '--network', str(oracle_dir / 'ros_32.conv.pt'))
    assert info.returncode == 0, info.stderr
    assert '32x32' in info.stdout and 'num_ws          8' in info.stdout and 'G skip, D resnet' in info.stdout
    generated = run_stylelens('generate', '--network', str(oracle_dir / 'ros_32.conv.pt'), '--seeds', '0-3',
                              '--trunc', '0.7', '--outdir', str(tmp_path / 'out'))
    assert generated.returncode == 0, generated.stderr
    from PIL import Image
    for seed in range(4):
        image = np.asarray(Image.open(tmp_path / 'out' / f'seed{seed:04d}.png')).astype(int)
        assert np.abs(image - ref['img_uint8_psi07'][seed].astype(int)).max() <= 1
    assert (tmp_path / 'out' / 'manifest.json').is_file()
    train_file = run_stylelens('info', '--network', str(oracle_dir / 'ros_32.pt'), '--json')
    assert train_file.returncode == 0, train_file.stderr
    assert json.loads(train_file.stdout)['num_ws'] == 8


# ---------------------------------------------------------------------------------------------------------------
# Hostile and broken files: one line each, nothing run.

class _Exploit:
    """Pickles as a call of os.system: a loader that runs pickled callables would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


@pytest.fixture(scope='module')
def state(oracle_dir):
    """The conv.pt checkpoint's contents (read with weights_only), to make broken variants of."""
    return torch.load(oracle_dir / 'ros_32.conv.pt', map_location='cpu', weights_only=True)


def _refused(path, *fragments: str) -> str:
    with pytest.raises(StylelensError) as info:
        stylelens.load_network(path)
    message = str(info.value)
    assert '\n' not in message and all(f in message for f in fragments), message
    return message


def test_forbidden_global_is_refused_and_nothing_runs(state, tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pt'
    torch.save({'g_ema': state['g_ema'], 'latent_avg': state['latent_avg'], 'extra': _Exploit(marker)}, path)
    _refused(path, 'refused', 'system', 'nothing in it was run')
    result = run_stylelens('info', '--network', str(path))
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert result.stderr.strip().startswith('Error:') and len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_truncated_files(oracle_dir, tmp_path):
    for name in ('ros_32.conv.legacy.pt', 'ros_32.pt'):
        data = (oracle_dir / name).read_bytes()
        path = tmp_path / name
        path.write_bytes(data[:len(data) // 2])
        with pytest.raises(StylelensError) as info:
            stylelens.load_network(path)
        assert '\n' not in str(info.value)
    _refused(tmp_path / 'ros_32.conv.legacy.pt', 'truncated or corrupt')


def _write(tmp_path, state, g_ema):
    path = tmp_path / 'broken.pt'
    torch.save({'g_ema': collections.OrderedDict(g_ema), 'latent_avg': state['latent_avg']}, path)
    return path


def test_missing_and_extra_keys(state, tmp_path):
    g_ema = dict(state['g_ema'])
    del g_ema['convs.3.noise.weight']
    _refused(_write(tmp_path, state, g_ema), 'g_ema', 'missing: convs.3.noise.weight', 'unexpected: none')
    g_ema = {**state['g_ema'], 'convs.3.extra.weight': torch.zeros(3)}
    _refused(_write(tmp_path, state, g_ema), 'missing: none', 'unexpected: convs.3.extra.weight')
    g_ema = {k: v for k, v in state['g_ema'].items() if not k.startswith('to_rgbs.1.')}
    _refused(_write(tmp_path, state, g_ema), 'missing: to_rgbs.1.bias')


def test_contradicting_shapes(state, tmp_path):
    g_ema = {**state['g_ema'], 'convs.1.conv.weight': torch.zeros(1, 32, 16, 3, 3)}
    _refused(_write(tmp_path, state, g_ema), 'g_ema', 'synthesis.b8.conv1.weight', '[32, 16, 3, 3]')
    g_ema = {**state['g_ema'], 'input.input': torch.zeros(1, 16, 4, 4)}
    _refused(_write(tmp_path, state, g_ema), 'g_ema')
    g_ema = {**state['g_ema'], 'conv1.noise.weight': torch.zeros(2)}
    _refused(_write(tmp_path, state, g_ema), 'conv1.noise.weight has shape [2]')
    g_ema = {**state['g_ema'], 'style.1.weight': 'not a tensor'}
    _refused(_write(tmp_path, state, g_ema), 'style.1.weight')
    g_ema = {**state['g_ema'], 'to_rgbs.1000000000.conv.weight': torch.zeros(1)}
    _refused(_write(tmp_path, state, g_ema), 'names 1000000001 blocks above 4x4')
    g_ema = {k: v for k, v in state['g_ema'].items() if not k.startswith('style.')}
    _refused(_write(tmp_path, state, g_ema), 'missing: style.1.weight')
    path = tmp_path / 'avg.pt'
    torch.save({'g_ema': state['g_ema'], 'latent_avg': torch.zeros(65)}, path)
    _refused(path, 'latent_avg has 65 values but style_dim is 64')


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'other.pt'
    torch.save({'g_ema': 'x', 'latent_avg': 1}, path)
    _refused(path, 'not a rosinality checkpoint')
    only_d = tmp_path / 'only_d.pt'
    torch.save({'d': {}, 'latent_avg': torch.zeros(1)}, only_d)
    with pytest.raises(StylelensError, match='holds no g_ema'):
        stylelens.load_generator(only_d)
