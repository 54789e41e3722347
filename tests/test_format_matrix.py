"""Every analysis verb on one network of every format stylelens reads, through the real CLI (in process).

Formats: an official StyleGAN2-ADA pickle, a StyleGAN3 pickle, a TensorFlow pickle, a rosinality checkpoint, a
safetensors export and a `stylelens train` run. Each verb must finish with exit 0 and write what it promises, or
refuse in one line naming why (e.g. a verb that needs something the format lacks), never with a traceback.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stylelens.cli import cli

FIXTURES = {
    'official': 'sg2_cond32.pkl',
    'stylegan3': 'sg3t_cond32.pkl',
    'tensorflow': 'tf_sg2_cond32.pkl',
    'rosinality': 'ros_32.pt',
}
CONDITIONAL = {'official', 'stylegan3', 'tensorflow', 'safetensors'}  # their fixtures take labels
NO_IMAGES = {'info', 'arch', 'weights'}
VERBS = {
    'info': ['info'],
    'arch': ['arch', '--depth', '2'],
    'weights': ['weights', '--all', '--out', '{out}/all.npz'],
    'generate': ['generate', '--seeds', '0-1', '--outdir', '{out}'],
    'activations': ['activations', '--seeds', '0', '--outdir', '{out}'],
    'mix': ['mix', '--rows', '0,1', '--cols', '2', '--styles', '0-1', '--outdir', '{out}'],
    'mix-study': ['mix-study', '--rows', '0', '--cols', '1', '--block-sets', 'coarse;fine', '--outdir', '{out}'],
    'interpolate': ['interpolate', '--seeds', '0,1', '--frames', '3', '--out', '{out}/walk.png'],
    'traverse': ['traverse', '--seed', '0', '--direction', 'random:0', '--steps', '3', '--out', '{out}/walk.png'],
}


@pytest.fixture(scope='module')
def safetensors_export(oracle_dir, tmp_path_factory) -> Path:
    """The official fixture converted with `stylelens convert --to safetensors`."""
    out = tmp_path_factory.mktemp('converted') / 'net.safetensors'
    result = CliRunner().invoke(cli, ['convert', '--network', str(oracle_dir / FIXTURES['official']), '--to',
                                      'safetensors', '--out', str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope='module')
def train_run(tmp_path_factory) -> Path:
    """A one-step `stylelens train` run of a mapping-DCGAN (a generator with the StyleGAN surface)."""
    out = tmp_path_factory.mktemp('run') / 'run'
    result = CliRunner().invoke(cli, ['train', '--model', 'mapping-dcgan', '--data', 'shapes:8', '--resolution', '16',
                                      '--epochs', '1', '--max-steps', '1', '--batch', '4', '--g-width', '8',
                                      '--d-width', '8', '--precision', 'fp32', '--outdir', str(out)])
    assert result.exit_code == 0, result.output
    return out


def network_file(request: pytest.FixtureRequest, fmt: str) -> Path:
    """The network file of format `fmt` (the safetensors export and the training run are made on first use)."""
    if fmt in ('safetensors', 'run'):
        return request.getfixturevalue({'safetensors': 'safetensors_export', 'run': 'train_run'}[fmt])
    return request.getfixturevalue('oracle_dir') / FIXTURES[fmt]


@pytest.mark.parametrize('verb', sorted(VERBS))
@pytest.mark.parametrize('fmt', [*FIXTURES, 'safetensors', 'run'])
def test_verb_runs_on_format(request, tmp_path, fmt, verb):
    argv = [a.format(out=tmp_path / 'out') for a in VERBS[verb]]
    argv[1:1] = ['--network', str(network_file(request, fmt))]
    if fmt in CONDITIONAL and verb not in NO_IMAGES:
        argv += ['--class', '1']
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert 'Traceback' not in result.output
    assert result.exit_code == 0, f'{fmt} {verb}: {result.output}'
