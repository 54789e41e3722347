"""`stylelens convert`: rosinality checkpoints written and read back (exactly, and with official networks' outputs),
safetensors read back bit for bit, official pickles with a user-supplied module source, lossy cases refused.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from oracle_helpers import close
from safetensors.torch import save_file

import stylelens
from conftest import run_stylelens, tiny_networks, tiny_snapshot_path
from stylelens.errors import StylelensError
from stylelens.loading.convert import convert_network
from stylelens.loading.official_writer import DEFAULT_MODULE_SRC
from stylelens.loading.rosinality_writer import check_generator
from stylelens.loading.safe_pickle import load_snapshot
from stylelens.loading.safetensors_file import load_safetensors_networks, safetensors_payload, write_safetensors
from stylelens.outputs import to_uint8

KEYS = ('G', 'D', 'G_ema')


def _read(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def _same_tensors(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize('name', ['ros_32.pt', 'ros_32.conv.pt'])
def test_rosinality_round_trip_is_exact(oracle_dir, tmp_path, name):
    """rosinality -> stylelens -> rosinality gives back convert_weight.py's file, tensor for tensor."""
    conversion, _ = convert_network(oracle_dir / name, 'rosinality', tmp_path / 'back.pt')
    written, original = _read(tmp_path / 'back.pt'), _read(oracle_dir / 'ros_32.conv.pt')
    assert list(written) == ['g_ema', 'latent_avg', 'g', 'd']
    for key in ('g_ema', 'g', 'd'):
        _same_tensors(written[key], original[key])
    if name == 'ros_32.conv.pt':
        assert torch.equal(written['latent_avg'], original['latent_avg'])
    assert any('12 upsampling filters x4' in line for line in conversion.lines)


def test_official_network_to_rosinality_keeps_its_outputs(oracle_dir, tmp_path):
    conversion, _ = convert_network(oracle_dir / 'sg2_uncond64.pkl', 'rosinality', tmp_path / 'u64.pt')
    assert any('channel_multiplier=2, its channel table divided by 8' in line for line in conversion.lines)
    assert any('conv_clamp 256 dropped' in line for line in conversion.lines)
    ref = dict(np.load(oracle_dir / 'sg2_uncond64.ref.npz'))
    nets = stylelens.load_network(tmp_path / 'u64.pt')
    G = nets['G_ema']
    close(G.mapping.w_avg, ref['w_avg'])
    close(G.synthesis(torch.from_numpy(ref['ws_psi1']), noise_mode='const'), ref['img_const_psi1'])
    close(G.synthesis(torch.from_numpy(ref['ws_psi1']), noise_mode='none'), ref['img_none_psi1'])
    z = torch.from_numpy(ref['z'])
    close(G.mapping(z, None, truncation_psi=0.7), ref['ws_psi07'])
    for i in range(len(z)):
        image = to_uint8(G(z[i:i + 1], None, truncation_psi=0.7, noise_mode='const'))[0].astype(int)
        assert np.abs(image - ref['img_uint8_psi07'][i].astype(int)).max() <= 1
    close(nets['D'](torch.from_numpy(ref['img_const_psi1']), None), ref['d_logits'])


@pytest.mark.parametrize('arch', [dict(img_resolution=16, channel_base=256, channel_max=32, mapping_layers=2),
                                  dict(img_resolution=8, z_dim=8, w_dim=8, channel_base=64, channel_max=16,
                                       mapping_layers=1)])
def test_other_sizes_and_channel_tables(tmp_path, arch):
    """Networks of other sizes and non-stock channel tables go to rosinality and back with the same outputs."""
    source = tiny_snapshot_path(tmp_path, mbstd_group_size=4, **arch)
    convert_network(source, 'rosinality', tmp_path / 'tiny.pt')
    before, after = stylelens.load_network(source), stylelens.load_network(tmp_path / 'tiny.pt')
    z = torch.randn([4, before['G_ema'].z_dim], generator=torch.Generator().manual_seed(1))
    for key in ('G_ema', 'G'):
        close(after[key](z, None, noise_mode='const'), before[key](z, None, noise_mode='const').numpy())
    close(after['G_ema'](z, None, truncation_psi=0.5, noise_mode='const'),
          before['G_ema'](z, None, truncation_psi=0.5, noise_mode='const').numpy())
    images = before['G_ema'](z, None, noise_mode='const')
    close(after['D'](images, None), before['D'](images, None).numpy())


@pytest.mark.parametrize('arch,message', [
    (dict(c_dim=4), 'conditional (c_dim 4) and rosinality networks have no classes'),
    (dict(g_architecture='orig'), "synthesis architecture is orig; rosinality's Generator is skip"),
    (dict(d_architecture='skip'), "rosinality's Discriminator is resnet"),
    (dict(img_channels=1), '1-channel images'),
    (dict(mbstd_group_size=2), 'minibatch-std layer is not group 4'),
])
def test_lossy_rosinality_conversions_are_refused(tmp_path, arch, message):
    source = tiny_snapshot_path(tmp_path, **{'mbstd_group_size': 4, **arch})
    out = tmp_path / 'made-only-after-checks' / 'x.pt'
    with pytest.raises(StylelensError, match='cannot convert') as info:
        convert_network(source, 'rosinality', out)
    assert message in str(info.value) and '\n' not in str(info.value)
    assert not out.parent.exists()


def test_stylegan3_and_scratch_generators_are_refused():
    fake = type('Generator', (torch.nn.Module,), {'__module__': 'stylelens.vendor.stylegan3.networks'})()
    with pytest.raises(StylelensError, match=r'StyleGAN3 \(alias-free\) Generator; rosinality has StyleGAN2'):
        check_generator(fake, 'G_ema')
    with pytest.raises(StylelensError, match='safetensors files hold StyleGAN2 Generator/Discriminator and StyleGAN3'):
        safetensors_payload({'G_ema': torch.nn.Linear(2, 2)})


def _equal_networks(a: dict, b: dict, kwargs: bool = True) -> None:
    """Same tensors bit for bit (and, with `kwargs`, the same init kwargs once tuples are JSON lists)."""
    for key in KEYS:
        _same_tensors(a[key].state_dict(), b[key].state_dict())
        assert not kwargs or json.dumps(a[key]._init_kwargs) == json.dumps(b[key]._init_kwargs)


def test_safetensors_round_trip_is_bit_identical(oracle_dir, tmp_path):
    conversion, _ = convert_network(oracle_dir / 'sg2_cond32.pkl', 'safetensors', tmp_path / 'c32.safetensors')
    assert conversion.lines[0] == "G: 77 tensors as they are, with Generator's init kwargs"
    source = stylelens.load_network(oracle_dir / 'sg2_cond32.pkl')
    loaded = load_safetensors_networks(tmp_path / 'c32.safetensors', KEYS)
    _equal_networks(source, loaded)
    assert loaded['training_set_kwargs'] == source['training_set_kwargs']
    z, c = torch.randn(2, 64), torch.eye(10)[:2]
    assert torch.equal(loaded['G_ema'](z, c, noise_mode='const'), source['G_ema'](z, c, noise_mode='const'))
    only_g = load_safetensors_networks(tmp_path / 'c32.safetensors', ('G_ema',))
    assert set(only_g) == {'G_ema', 'training_set_kwargs', 'augment_pipe'}


def test_stylegan3_safetensors_round_trip_is_bit_identical(oracle_dir, tmp_path):
    convert_network(oracle_dir / 'sg3r_32.pkl', 'safetensors', tmp_path / 'r32.safetensors')
    source = stylelens.load_network(oracle_dir / 'sg3r_32.pkl')
    loaded = load_safetensors_networks(tmp_path / 'r32.safetensors', KEYS)
    _equal_networks(source, loaded)
    z = torch.randn(2, source['G_ema'].z_dim)
    assert torch.equal(loaded['G_ema'](z, None), source['G_ema'](z, None))


def test_safetensors_stores_a_shared_generator_once(tmp_path):
    G = tiny_networks()['G_ema']
    tensors, metadata, lines = safetensors_payload({'G': G, 'G_ema': G, 'D': None})
    assert all(name.startswith('G_ema.') for name in tensors) and 'stored once' in ' '.join(lines)
    write_safetensors(tmp_path / 'run.safetensors', tensors, metadata)
    loaded = load_safetensors_networks(tmp_path / 'run.safetensors', KEYS)
    assert loaded['G'] is loaded['G_ema'] and loaded['D'] is None
    _same_tensors(loaded['G'].state_dict(), G.state_dict())


def _refused_safetensors(path, fragment):
    with pytest.raises(StylelensError) as info:
        load_safetensors_networks(path, KEYS)
    assert fragment in str(info.value) and '\n' not in str(info.value)


def test_hostile_safetensors_files(tmp_path):
    G = tiny_networks()['G_ema']
    tensors, metadata, _ = safetensors_payload({'G_ema': G})
    plain = tmp_path / 'plain.safetensors'
    save_file({'w': torch.zeros(2)}, plain)
    _refused_safetensors(plain, 'without stylelens build options')
    good = tmp_path / 'good.safetensors'
    write_safetensors(good, tensors, metadata)
    truncated = tmp_path / 'truncated.safetensors'
    truncated.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    _refused_safetensors(truncated, 'truncated or corrupt')
    spec = json.loads(metadata['networks'])
    evil = {**spec['G_ema'], 'module': 'os', 'class_name': 'system'}
    write_safetensors(tmp_path / 'evil.safetensors', tensors, {**metadata, 'networks': json.dumps({'G_ema': evil})})
    _refused_safetensors(tmp_path / 'evil.safetensors', 'not a StyleGAN2/StyleGAN3 network spec')
    doubled = {k: v.double() if k.endswith('fc0.weight') else v for k, v in tensors.items()}
    write_safetensors(tmp_path / 'f64.safetensors', doubled, metadata)
    _refused_safetensors(tmp_path / 'f64.safetensors', 'G_ema.mapping.fc0.weight is torch.float64')
    fewer = {k: v for k, v in tensors.items() if not k.endswith('fc1.bias')}
    write_safetensors(tmp_path / 'fewer.safetensors', fewer, metadata)
    _refused_safetensors(tmp_path / 'fewer.safetensors', 'missing: mapping.fc1.bias')


def test_official_pickle_with_and_without_module_source(oracle_dir, tmp_path):
    checkout = tmp_path / 'stylegan2-ada-pytorch'
    (checkout / 'training').mkdir(parents=True)
    source = "# stands in for NVIDIA's file\nclass SynthesisLayer: pass\nclass Generator: pass\n"
    (checkout / 'training' / 'networks.py').write_text(source)
    ref = dict(np.load(oracle_dir / 'ros_32.ref.npz'))
    for name, module_src, extra in (('stub.pkl', DEFAULT_MODULE_SRC, None), ('nv.pkl', source, checkout)):
        conversion, _ = convert_network(oracle_dir / 'ros_32.conv.pt', 'official', tmp_path / name, extra)
        records = load_snapshot(tmp_path / name)
        digest = hashlib.sha256(module_src.encode('utf-8')).hexdigest()
        assert all(records[k].module_src_sha256 == digest for k in KEYS)
        nets = stylelens.load_network(tmp_path / name)
        close(nets['G_ema'](torch.from_numpy(ref['z']), None, truncation_psi=0.7, noise_mode='const'),
              ref['img_psi07_const'])
        _equal_networks(nets, stylelens.load_network(oracle_dir / 'ros_32.conv.pt'), kwargs=False)
    assert any(str(checkout / 'training' / 'networks.py') in line for line in conversion.lines)
    (checkout / 'training' / 'networks.py').unlink()
    with pytest.raises(StylelensError, match='has no training/networks.py or training/networks_stylegan2.py'):
        convert_network(oracle_dir / 'ros_32.conv.pt', 'official', tmp_path / 'x.pkl', checkout)


def test_cli_convert_prints_the_map_and_writes_a_manifest(oracle_dir, tmp_path):
    out = tmp_path / 'deep' / 'ros.pt'
    result = run_stylelens('convert', '--network', str(oracle_dir / 'sg2_uncond64.pkl'), '--to', 'rosinality',
                           '--out', str(out))
    assert result.returncode == 0, result.stderr
    assert 'g_ema <- G_ema: 99 tensors' in result.stdout and 'latent_avg <- G_ema.mapping.w_avg' in result.stdout
    assert f'wrote {out} (rosinality)' in result.stdout
    manifest = json.loads((out.parent / 'ros.manifest.json').read_text())
    assert manifest['command'] == 'convert' and manifest['options']['to'] == 'rosinality'
    assert ['mapping.fc0.weight', 'style.1.weight', 'same'] in manifest['extra']['name_map']['g_ema']
    assert manifest['network']['sha256'] and manifest['extra']['keys'] == ['g_ema', 'latent_avg', 'g', 'd']


@pytest.mark.parametrize('args,message', [
    (['--to', 'rosinality', '--official-source', '{tmp}'], '--official-source is only for --to official'),
    (['--to', 'safetensors'], 'a safetensors file ends in .safetensors'),
    (['--network', '{oracle}/sg2_cond32.pkl', '--to', 'rosinality'], 'rosinality networks have no classes'),
])
def test_cli_convert_bad_input(oracle_dir, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, oracle=oracle_dir) for a in args]
    if '--network' not in args:
        args += ['--network', str(oracle_dir / 'ros_32.conv.pt')]
    result = run_stylelens('convert', *args, '--out', str(tmp_path / 'out' / 'x.pt'))
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('Error:') and message in lines[0], result.stderr
    assert not (tmp_path / 'out').exists()


def test_safetensors_file_as_network(oracle_dir, tmp_path):
    """A stylelens safetensors file is a --network like any other (network.py dispatches SAFETENSORS to it)."""
    convert_network(oracle_dir / 'ros_32.pt', 'safetensors', tmp_path / 'r.safetensors')
    _equal_networks(stylelens.load_network(tmp_path / 'r.safetensors'), stylelens.load_network(oracle_dir / 'ros_32.pt'))
    result = run_stylelens('info', '--network', str(tmp_path / 'r.safetensors'))
    assert result.returncode == 0 and '32x32' in result.stdout, result.stderr
