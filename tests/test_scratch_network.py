"""`stylelens train` runs as `--network`: tiny real runs on the shared CIFAR-10 subset, analysed through the console
script, with `generator.pt` loaded only by `torch.load(weights_only=True)` and hostile or foreign files refused."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch

import stylelens
from conftest import run_stylelens
from stylelens.errors import StylelensError
from stylelens.loading.network import load_network
from stylelens.loading.runs import GENERATOR_FORMAT, load_run_generator


def stylelens_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the installed console script on one CPU thread."""
    return run_stylelens(*args, cwd=cwd, timeout=120)


def ok(*args: str, cwd: Path) -> str:
    """stdout of a command that must succeed."""
    result = stylelens_cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(*args: str, cwd: Path) -> str:
    """The one-line error of a command that must fail cleanly (no traceback)."""
    result = stylelens_cli(*args, cwd=cwd)
    assert result.returncode != 0 and 'Traceback' not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def train_run(data: str, model: str, root: Path) -> Path:
    """A seconds-long 16x16 run of `model` with widths 8 and two steps, trained by the console script."""
    ok('train', '--model', model, '--data', data, '--resolution', '16', '--g-width', '8', '--d-width', '8',
       '--batch', '32', '--epochs', '1', '--max-steps', '2', '--grid', '2', '--precision', 'fp32', '--device', 'cpu',
       '--outdir', model, cwd=root)
    return root / model


@pytest.fixture(scope='module')
def run_dir(dogs: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(dogs, 'mapping-dcgan', tmp_path_factory.mktemp('runs'))


def test_generator_file_is_plain_data(run_dir: Path) -> None:
    payload = torch.load(run_dir / 'generator.pt', weights_only=True)
    assert (payload['format'], payload['version'], payload['model']) == (GENERATOR_FORMAT, 1, 'mapping-dcgan')
    assert payload['build_kwargs']['resolution'] == 16 and payload['build_kwargs']['g_channels'] == 8
    trained = torch.load(run_dir / 'checkpoints' / 'last.pt', weights_only=False)['G']
    assert payload['state_dict'].keys() == trained.keys()
    assert all(torch.equal(payload['state_dict'][k], trained[k]) for k in trained)


def test_library_loaders(run_dir: Path) -> None:
    G = stylelens.load_generator(run_dir)
    assert type(G).__name__ == 'MappingDCGANGenerator' and not G.training
    assert not any(p.requires_grad for p in G.parameters())
    state = torch.load(run_dir / 'generator.pt', weights_only=True)['state_dict']
    assert all(torch.equal(v, state[k]) for k, v in G.state_dict().items())
    nets = load_network(run_dir / 'generator.pt')
    assert nets['G'] is nets['G_ema'] and nets['D'] is None
    rng = torch.get_rng_state()
    load_run_generator(run_dir)
    assert torch.equal(rng, torch.get_rng_state())


def test_analysis_verbs_on_a_run(run_dir: Path, tmp_path: Path) -> None:
    info = json.loads(ok('info', '--network', str(run_dir), '--json', cwd=tmp_path))
    assert info['img_resolution'] == 16 and info['num_ws'] == len(info['blocks']) + 1
    assert info['network']['path'] == str(run_dir / 'generator.pt') and len(info['network']['sha256']) == 64
    assert 'ws indices' in ok('info', '--network', str(run_dir), cwd=tmp_path)
    ok('interpolate', '--network', str(run_dir), '--seeds', '1,2', '--space', 'w', '--frames', '4', '--compare',
       '--out', 'walk.png', cwd=tmp_path)
    ok('mix', '--network', str(run_dir), '--rows', '1,2', '--cols', '3', '--blocks', 'b4', '--outdir', 'mix',
       cwd=tmp_path)
    ok('activations', '--network', str(run_dir), '--seeds', '0', '--outdir', 'act', cwd=tmp_path)
    ok('generate', '--network', str(run_dir), '--seeds', '0-2', '--outdir', 'gen', cwd=tmp_path)
    assert (tmp_path / 'walk.png').is_file() and len(list((tmp_path / 'gen').glob('*.png'))) == 3
    assert json.loads((tmp_path / 'gen' / 'manifest.json').read_text())['network']['path'].endswith('generator.pt')


class Payload:
    """Creates `marker` when unpickled: stands for any code a hostile file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f'touch {self.marker}',)


@pytest.mark.parametrize('zipped', [True, False], ids=['torch-zip', 'raw-pickle'])
def test_malicious_generator_is_refused_without_side_effects(tmp_path: Path, zipped: bool) -> None:
    marker, run = tmp_path / 'pwned', tmp_path / 'evil'
    run.mkdir()
    payload = dict(format=GENERATOR_FORMAT, version=1, model='mapping-dcgan', build_kwargs={},
                   state_dict={'x': Payload(marker)})
    if zipped:
        torch.save(payload, run / 'generator.pt')
    else:
        (run / 'generator.pt').write_bytes(pickle.dumps(payload))
    error = refused('generate', '--network', str(run), '--seeds', '0', '--outdir', 'out', cwd=tmp_path)
    assert 'weights_only=True' in error and 'nothing in it was run' in error and 'weights_only=False' not in error
    assert not marker.exists() and not (tmp_path / 'out').exists()
    with pytest.raises(StylelensError, match='weights_only'):
        load_run_generator(run)
    assert not marker.exists()


def test_foreign_files_and_folders_are_refused(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / 'empty').mkdir()
    assert 'not a stylelens train run' in refused('info', '--network', 'empty', cwd=tmp_path)
    error = refused('info', '--network', str(run_dir / 'checkpoints' / 'last.pt'), cwd=tmp_path)
    assert 'not a stylelens train generator' in error
    payload = torch.load(run_dir / 'generator.pt', weights_only=True)
    for change, message in ((dict(version=2), 'version 2'), (dict(model='biggan'), 'unknown model'),
                            (dict(build_kwargs={'evil': 1}), 'bad build_kwargs'),
                            (dict(state_dict={}), 'do not fit'),
                            (dict(state_dict={k: v.double() for k, v in payload['state_dict'].items()}),
                             'wrong type'),
                            (dict(build_kwargs={**payload['build_kwargs'], 'g_channels': 1 << 40}), 'do not fit')):
        torch.save({**payload, **change}, tmp_path / 'generator.pt')
        with pytest.raises(StylelensError, match=message):
            load_run_generator(tmp_path)


def test_plain_dcgan_run_needs_a_mapping_network(dogs: str, tmp_path: Path) -> None:
    run = train_run(dogs, 'dcgan', tmp_path)
    assert type(stylelens.load_generator(run)).__name__ == 'DCGANGenerator'
    error = refused('mix', '--network', str(run), '--rows', '1,2', '--cols', '3', '--outdir', 'mix', cwd=tmp_path)
    assert 'no mapping network' in error and 'mapping-dcgan' in error
    assert not (tmp_path / 'mix').exists()
