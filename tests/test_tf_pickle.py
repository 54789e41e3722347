"""TensorFlow network pickles: parity with NVIDIA's converter on the oracle fixture, the 2019 StyleGAN2 layout and
other variants written here in the TF layout, the CLI, and refusals (foreign globals, truncation, old state versions,
unconvertible variants, unused variables), each in one line and without running anything from the file.

The synthetic pickles are written as tflib wrote them: protocol 3, GLOBAL opcodes, each Network as NEWOBJ with no
arguments and BUILD with a plain state dict, variables as numpy arrays and numpy float32 scalars.
"""
from __future__ import annotations

import copy
import copyreg
import io
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_parity as parity
import torch
from oracle_helpers import load_case
from PIL import Image

import stylelens
from stylelens.loading.safe_pickle import UnsafePickleError
from stylelens.loading.snapshot_file import CorruptNetworkError
from stylelens.loading.tf_convert import TFConversionError
from stylelens.loading.tf_pickle import load_tf_networks
from stylelens.vendor.stylegan2_ada.networks import Discriminator, Generator

FIXTURE = 'tf_sg2_cond32'


@pytest.fixture(scope='module')
def case(oracle_dir):
    """(converted networks, reference arrays, fixture JSON) of the TF oracle pickle."""
    return load_case(oracle_dir, FIXTURE)


# The parity checks of test_parity.py (every npz key: ws, images, uint8 per seed, mapping layers, synthesis layers and
# blocks, the mixing grid, D logits, D blocks, dmap.cmap), collected here with this module's `case`.
test_mapping_and_truncation = parity.test_mapping_and_truncation
test_synthesis_images = parity.test_synthesis_images
test_uint8_images_per_seed = parity.test_uint8_images_per_seed
test_mapping_layers = parity.test_mapping_layers
test_synthesis_blocks_and_layers = parity.test_synthesis_blocks_and_layers
test_style_mixing_grid = parity.test_style_mixing_grid
test_discriminator = parity.test_discriminator


def test_kwargs_and_state_dicts_are_nvidias(case):
    nets, _, meta = case
    converted = meta['converted']
    for key in ('G', 'G_ema', 'D'):
        assert json.loads(json.dumps(nets[key]._init_kwargs)) == converted[f'{key}_init_kwargs']
    for key in ('G_ema', 'D'):
        expected = {name: shape for name, shape, _ in converted[f'{key}_state_dict']}
        assert {k: list(v.shape) for k, v in nets[key].state_dict().items()} == expected
    assert nets['training_set_kwargs'] is None and nets['augment_pipe'] is None
    assert not torch.equal(nets['G'].synthesis.b32.torgb.weight, nets['G_ema'].synthesis.b32.torgb.weight)
    assert not any(t.requires_grad for t in nets['G_ema'].parameters()) and not nets['G_ema'].training


def test_only_the_requested_networks_are_built(oracle_dir):
    nets = load_tf_networks(oracle_dir / f'{FIXTURE}.pkl', ('G_ema',))
    assert nets['G'] is None and nets['D'] is None and isinstance(nets['G_ema'], Generator)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'stylelens', *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_info_and_generate(oracle_dir, tmp_path):
    pkl = str(oracle_dir / f'{FIXTURE}.pkl')
    info = run_cli('info', '--network', pkl, '--json', cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert '"num_ws": 8' in info.stdout and '"c_dim": 4' in info.stdout
    made = run_cli('generate', '--network', pkl, '--seeds', '2', '--class', '2', '--trunc', '0.7', '--outdir', 'out',
                   cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    image = np.asarray(Image.open(tmp_path / 'out' / 'seed0002.png')).astype(int)
    ref = np.load(oracle_dir / f'{FIXTURE}.ref.npz')['img_uint8_psi07'][2].astype(int)
    assert np.abs(image - ref).max() <= 1


# --- writing pickles in the TF layout --------------------------------------------------------------------------

class _Global:
    """Base of stand-in classes that pickle as the global `pickle_as` (module, name), e.g. os.system."""

    pickle_as: tuple[str, str]


def global_named(module: str, name: str) -> type:
    return type(name, (_Global,), {'pickle_as': (module, name)})


class TFNetwork:
    """Pickles as a dnnlib.tflib.network.Network: NEWOBJ with no arguments, then BUILD with its state dict."""

    pickle_as = ('dnnlib.tflib.network', 'Network')

    def __init__(self, state: dict) -> None:
        self.state = state

    def __reduce_ex__(self, protocol):
        return copyreg.__newobj__, (type(self),), self.state


class Call:
    """Pickles as a call of a global with arguments (REDUCE), then BUILD with `state` if given."""

    def __init__(self, module: str, name: str, *args, state=None) -> None:
        self.callee, self.args, self.state = global_named(module, name), args, state

    def __reduce_ex__(self, protocol):
        return (self.callee, self.args) if self.state is None else (self.callee, self.args, self.state)


class TFPickler(pickle._Pickler):
    """Protocol 3 with GLOBAL opcodes, numpy modules spelled `numpy.core` (numpy 1, as tflib wrote) or `numpy._core`."""

    def __init__(self, file, numpy_core: str = 'numpy.core') -> None:
        super().__init__(file, protocol=3)
        self.numpy_core = numpy_core

    def save_global(self, obj, name=None):
        module, name = getattr(obj, 'pickle_as', (obj.__module__, obj.__qualname__))
        module = re.sub(r'^numpy\._core\b', self.numpy_core, module)
        self.write(pickle.GLOBAL + f'{module}\n{name}\n'.encode())
        self.memoize(obj)


def write_pickle(path: Path, obj, numpy_core: str = 'numpy.core') -> Path:
    buffer = io.BytesIO()
    TFPickler(buffer, numpy_core).dump(obj)
    path.write_bytes(buffer.getvalue())
    return path


NEVER_RUN = 'raise RuntimeError("stylelens must never execute this")\n'


def network(name: str, static_kwargs: dict, variables: list, components: dict | None = None, version: int = 5,
            src: str = NEVER_RUN) -> TFNetwork:
    state = dict(version=version, name=name, static_kwargs=static_kwargs, components=components or {},
                 build_module_src=src, build_func_name=f'{name}_main', variables=variables)
    if version >= 5:
        state.update(input_shapes=[[None, 1]], output_shapes=[[None, 1]], input_names=['in'], output_names=['out'])
    return TFNetwork(state)


# --- our networks exported to TF variables, following the TF code's scopes -------------------------------------

def kernel(weight: torch.Tensor, flip: bool = False) -> np.ndarray:
    """OIHW -> TF's HWIO, spatially flipped for TF's transposed (up-sampling) convolutions."""
    k = weight.numpy().transpose(2, 3, 1, 0)
    return np.ascontiguousarray(k[::-1, ::-1] if flip else k)


def dense(scope: str, layer) -> list:
    return [(f'{scope}/weight', np.ascontiguousarray(layer.weight.numpy().T)), (f'{scope}/bias', layer.bias.numpy())]


def conv(scope: str, layer) -> list:
    found = [(f'{scope}/weight', kernel(layer.weight))]
    return found + ([(f'{scope}/bias', layer.bias.numpy())] if layer.bias is not None else [])


def modulated(scope: str, layer, flip: bool = False) -> list:
    found = [(f'{scope}/weight', kernel(layer.weight, flip)),
             (f'{scope}/mod_weight', np.ascontiguousarray(layer.affine.weight.numpy().T)),
             (f'{scope}/mod_bias', layer.affine.bias.numpy() - 1)]  # TF adds the 1 at run time
    if hasattr(layer, 'noise_strength'):
        found.append((f'{scope}/noise_strength', np.float32(layer.noise_strength.item())))
    return found + [(f'{scope}/bias', layer.bias.numpy())]


def tf_generator(G: Generator, name: str, static_kwargs: dict, own: list, version: int,
                 src: str = NEVER_RUN) -> TFNetwork:
    """G as TF's G_main with components synthesis and mapping."""
    noise, layers = [], []
    for res in G.synthesis.block_resolutions:
        block, scope = getattr(G.synthesis, f'b{res}'), f'{res}x{res}'
        if res == 4:
            convs = [block.conv1]
            layers += [('4x4/Const/const', block.const.numpy()[None])] + modulated('4x4/Conv', block.conv1)
        else:
            convs = [block.conv0, block.conv1]
            layers += modulated(f'{scope}/Conv0_up', block.conv0, flip=True) + modulated(f'{scope}/Conv1', block.conv1)
            if hasattr(block, 'skip'):
                layers.append((f'{scope}/Skip/weight', kernel(block.skip.weight, flip=True)))
        noise += [c.noise_const.numpy()[None, None] for c in convs if hasattr(c, 'noise_const')]
        if hasattr(block, 'torgb'):
            layers += modulated(f'{scope}/ToRGB', block.torgb)
    synthesis = [(f'noise{i}', n) for i, n in enumerate(noise)] + layers
    mapping = dense('LabelEmbed', G.mapping.embed) if G.c_dim else []
    for i in range(G.mapping.num_layers):
        mapping += dense(f'Dense{i}', getattr(G.mapping, f'fc{i}'))
    components = dict(synthesis=network('G_synthesis', static_kwargs, synthesis, version=version, src=src),
                      mapping=network('G_mapping', static_kwargs, mapping, version=version, src=src))
    return network(name, static_kwargs, own + [('dlatent_avg', G.mapping.w_avg.numpy())], components, version, src)


def tf_discriminator(D: Discriminator, static_kwargs: dict, version: int, src: str = NEVER_RUN) -> TFNetwork:
    found = []
    if D.c_dim:
        found += dense('LabelEmbed', D.mapping.embed)
        for i in range(D.mapping.num_layers):
            found += dense(f'Mapping{i}', getattr(D.mapping, f'fc{i}'))
    for res in D.block_resolutions:
        block, scope = getattr(D, f'b{res}'), f'{res}x{res}'
        found += conv(f'{scope}/FromRGB', block.fromrgb) if hasattr(block, 'fromrgb') else []
        found += conv(f'{scope}/Conv0', block.conv0) + conv(f'{scope}/Conv1_down', block.conv1)
        found += conv(f'{scope}/Skip', block.skip) if hasattr(block, 'skip') else []
    found += conv('4x4/FromRGB', D.b4.fromrgb) if hasattr(D.b4, 'fromrgb') else []
    found += conv('4x4/Conv', D.b4.conv) + dense('4x4/Dense0', D.b4.fc) + dense('Output', D.b4.out)
    return network('D', static_kwargs, found, version=version, src=src)


def randomized(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """`net` with every tensor but the resample filters (which TF pickles do not store) moved off its init value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if not name.endswith('resample_filter'):
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=gen))
    return net.eval().requires_grad_(False)


# 2019 StyleGAN2 (config-f-like kwargs, state version 4, G_main's 'lod', G skip, D resnet without mbstd_group_size)
# and a conditional StyleGAN2-ADA variant (G resnet, D orig with a label mapping layer, state version 5).
VARIANTS = {
    'stylegan2-2019': dict(
        version=4, own=[('lod', np.float32(0))], numpy_core='numpy.core',
        G_tf=dict(num_channels=3, resolution=16, label_size=0, fmap_base=128, fmap_max=32, latent_size=16,
                  dlatent_size=16, mapping_layers=2, fmap_decay=1.0, randomize_noise=True),
        D_tf=dict(num_channels=3, resolution=16, label_size=0, fmap_base=128, fmap_max=32),
        G=dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
               mapping_kwargs=dict(num_layers=2, embed_features=None, layer_features=None, activation='lrelu',
                                   lr_multiplier=0.01, w_avg_beta=0.995),
               synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None,
                                     architecture='skip', resample_filter=[1, 3, 3, 1], use_noise=True,
                                     activation='lrelu')),
        D=dict(c_dim=0, img_resolution=16, img_channels=3, architecture='resnet', channel_base=256, channel_max=32,
               num_fp16_res=0, conv_clamp=None, cmap_dim=None,
               block_kwargs=dict(activation='lrelu', resample_filter=[1, 3, 3, 1], freeze_layers=0),
               mapping_kwargs=dict(num_layers=0, embed_features=None, layer_features=None, activation='lrelu',
                                   lr_multiplier=0.1),
               epilogue_kwargs=dict(mbstd_group_size=None, mbstd_num_channels=1, activation='lrelu'))),
    'ada-conditional': dict(
        version=5, own=[], numpy_core='numpy._core',
        G_tf=dict(num_channels=1, resolution=8, label_size=3, fmap_base=64, fmap_max=16, latent_size=8,
                  dlatent_size=12, mapping_layers=1, architecture='resnet', conv_clamp=256, num_fp16_res=2),
        D_tf=dict(num_channels=1, resolution=8, label_size=3, fmap_base=64, fmap_max=16, architecture='orig',
                  mapping_layers=1, mbstd_group_size=2),
        G=dict(z_dim=8, c_dim=3, w_dim=12, img_resolution=8, img_channels=1,
               mapping_kwargs=dict(num_layers=1, embed_features=None, layer_features=None, activation='lrelu',
                                   lr_multiplier=0.01, w_avg_beta=0.995),
               synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=2, conv_clamp=256,
                                     architecture='resnet', resample_filter=[1, 3, 3, 1], use_noise=True,
                                     activation='lrelu')),
        D=dict(c_dim=3, img_resolution=8, img_channels=1, architecture='orig', channel_base=128, channel_max=16,
               num_fp16_res=0, conv_clamp=None, cmap_dim=None,
               block_kwargs=dict(activation='lrelu', resample_filter=[1, 3, 3, 1], freeze_layers=0),
               mapping_kwargs=dict(num_layers=1, embed_features=None, layer_features=None, activation='lrelu',
                                   lr_multiplier=0.1),
               epilogue_kwargs=dict(mbstd_group_size=2, mbstd_num_channels=1, activation='lrelu'))),
}


def variant_networks(name: str) -> dict[str, torch.nn.Module]:
    spec = VARIANTS[name]
    G = randomized(Generator(**copy.deepcopy(spec['G'])), 1)
    return dict(G=G, D=randomized(Discriminator(**copy.deepcopy(spec['D'])), 2),
                G_ema=randomized(copy.deepcopy(G), 3))


def variant_pickle(path: Path, name: str, nets: dict, **changes) -> Path:
    """The networks of VARIANTS[name] as a TF pickle; `changes` override entries of VARIANTS[name] (G's static kwargs
    `G_tf`, its own variables `own`, the state `version`) or give the graph code `src`."""
    spec = {'src': NEVER_RUN, **VARIANTS[name], **changes}
    version, own, src = spec['version'], spec['own'], spec['src']
    G = tf_generator(nets['G'], 'G', spec['G_tf'], own, version, src)
    Gs = tf_generator(nets['G_ema'], 'Gs', spec['G_tf'], own, version, src)
    D = tf_discriminator(nets['D'], spec['D_tf'], version, src)
    return write_pickle(path, (G, D, Gs), spec['numpy_core'])


@pytest.mark.parametrize('name', VARIANTS)
def test_variant_converts_exactly(tmp_path, name):
    nets = variant_networks(name)
    marker = tmp_path / 'executed'
    path = variant_pickle(tmp_path / 'net.pkl', name, nets, src=f'open({str(marker)!r}, "w")\n')
    loaded = stylelens.load_network(path)
    assert not marker.exists()
    for key, original in nets.items():
        assert loaded[key]._init_kwargs == VARIANTS[name]['D' if key == 'D' else 'G']
        ours = loaded[key].state_dict()
        assert ours.keys() == original.state_dict().keys()
        for tensor_name, tensor in original.state_dict().items():
            assert torch.equal(ours[tensor_name], tensor), tensor_name
    G, spec = loaded['G_ema'], VARIANTS[name]['G']
    z, c = torch.randn([2, spec['z_dim']]), torch.eye(max(spec['c_dim'], 1))[:2, :spec['c_dim']]
    assert torch.equal(G(z, c, noise_mode='const'), nets['G_ema'](z, c, noise_mode='const'))


# --- refusals ---------------------------------------------------------------------------------------------------

def refused(error_type: type, path: Path, *words: str) -> str:
    """Load `path`, expect one line of `error_type` naming the file and containing `words`."""
    with pytest.raises(error_type) as err:
        stylelens.load_network(path)
    message = str(err.value)
    assert '\n' not in message and str(path) in message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize('module,name,argument', [('os', 'system', 'touch {marker}'),
                                                  ('builtins', 'eval', 'open({marker!r}, "w")'),
                                                  ('subprocess', 'Popen', ['touch', '{marker}'])])
def test_foreign_globals_are_refused_and_nothing_runs(tmp_path, module, name, argument):
    marker = str(tmp_path / 'pwned')
    argument = [a.format(marker=marker) for a in argument] if isinstance(argument, list) else \
        argument.format(marker=marker)
    nets = variant_networks('stylegan2-2019')
    G = tf_generator(nets['G'], 'G', VARIANTS['stylegan2-2019']['G_tf'], [], 5)
    path = write_pickle(tmp_path / 'evil.pkl', (G, Call(module, name, argument), G))
    refused(UnsafePickleError, path, f'{module}.{name}', 'not executed')
    assert not Path(marker).exists()


def test_foreign_global_via_the_cli(tmp_path):
    path = write_pickle(tmp_path / 'evil.pkl', (network('G', {}, []), Call('os', 'system', 'touch pwned')))
    result = run_cli('info', '--network', str(path), cwd=tmp_path)
    assert result.returncode != 0 and 'Traceback' not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and 'os.system' in result.stderr
    assert not (tmp_path / 'pwned').exists()


def test_build_on_other_objects_is_refused(tmp_path):
    path = write_pickle(tmp_path / 'build.pkl', (network('G', {}, []), Call('collections', 'OrderedDict',
                                                                           state={'x': 1})))
    refused(UnsafePickleError, path, 'BUILD')


def test_truncated_file(tmp_path, oracle_dir):
    data = (oracle_dir / f'{FIXTURE}.pkl').read_bytes()
    path = tmp_path / 'cut.pkl'
    path.write_bytes(data[:len(data) // 2])
    refused(CorruptNetworkError, path, 'ends early')


def test_not_a_network_tuple(tmp_path):
    path = write_pickle(tmp_path / 'dict.pkl', {'G': network('G', {}, [])})
    refused(CorruptNetworkError, path, 'expected the tuple (G, D, Gs)')


def test_old_state_version(tmp_path):
    nets = variant_networks('stylegan2-2019')
    refused(TFConversionError, variant_pickle(tmp_path / 'v3.pkl', 'stylegan2-2019', nets, version=3),
            'state version 3', 'versions 4 and later')


def convert_with(tmp_path: Path, G_tf: dict | None = None, own: list | None = None) -> Path:
    """The 2019 variant with G's static kwargs updated and its own variables (default: lod 0) replaced."""
    spec = VARIANTS['stylegan2-2019']
    return variant_pickle(tmp_path / 'net.pkl', 'stylegan2-2019', variant_networks('stylegan2-2019'),
                          G_tf={**spec['G_tf'], **(G_tf or {})}, own=spec['own'] if own is None else own)


def test_progressive_growing_layers(tmp_path):
    rgb = np.zeros([1, 1, 32, 3], np.float32)
    refused(TFConversionError, convert_with(tmp_path, own=[('ToRGB_lod1/weight', rgb)]),
            'progressive-growing', 'ToRGB_lod1/weight')


def test_unused_variable(tmp_path):
    refused(TFConversionError, convert_with(tmp_path, own=[('Dense9/weight', np.zeros([4, 4], np.float32))]),
            'Dense9/weight', 'unused')


def test_lod_other_than_zero(tmp_path):
    refused(TFConversionError, convert_with(tmp_path, own=[('lod', np.float32(2))]), 'lod is 2.0', 'progressive')


@pytest.mark.parametrize('kwarg,value,words', [('fmap_decay', 0.5, ('fmap_decay=0.5', 'no counterpart')),
                                               ('synthesis_func', 'G_synthesis_stylegan_revised',
                                                ('synthesis_func',)),
                                               ('use_labels_twice', True, ('unknown', 'use_labels_twice'))])
def test_unknown_or_non_default_kwargs(tmp_path, kwarg, value, words):
    refused(TFConversionError, convert_with(tmp_path, G_tf={kwarg: value}), *words)
