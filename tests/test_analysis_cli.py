"""The directions and causes verbs through the `stylelens` click group (in-process, real options and outputs):
what each writes, its manifest, and bad input answered in one line with nothing written. One console-script run
checks the exit status and that a file that would run code is refused without running it."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import stylelens
from conftest import run_stylelens
from stylelens.cli import cli
from stylelens.directions.format import load_directions, save_directions
from stylelens.generation import seeds_to_ws

pytestmark = pytest.mark.usefixtures('private_cache')


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def one_line_error(tmp_path, *args: str) -> str:
    result = run(*args)
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith('Error')]
    assert len(errors) == 1 and 'Traceback' not in result.output, result.output
    assert not (tmp_path / 'x').exists(), 'bad input must write nothing'
    return errors[0]


def manifest(path) -> dict:
    return json.loads(path.with_name(f'{path.stem}.manifest.json').read_text())


def test_directions_sefa_writes_the_file_its_figure_and_manifest(tmp_path):
    out = tmp_path / 'd' / 'sefa.npz'
    result = ok('directions', 'sefa', '--num', '3', '--pca-samples', '256', '--out', str(out))
    assert 'sefa:0' in result.output
    dirs = load_directions(out)
    assert len(dirs) == 3 and dirs.method == 'sefa' and len(dirs.network_sha256) == 64
    recorded = manifest(out)
    assert recorded['network']['sha256'] == dirs.network_sha256 and recorded['extra']['count'] == 3
    assert (tmp_path / 'd' / 'sefa.png').stat().st_size > 0 and recorded['extra']['files'] == ['sefa.npz', 'sefa.png']
    walk = tmp_path / 'walk.png'
    result = ok('traverse', '--seed', '5', '--direction', f'{out}:1', '--steps', '3', '--pca-samples', '256',
                '--out', str(walk))
    assert 'sefa:1' in manifest(walk)['extra']['direction'] and 'warning' not in result.output
    dirs.network_sha256 = 'f' * 64
    save_directions(out, dirs)
    result = ok('traverse', '--seed', '5', '--direction', f'{out}:1', '--steps', '3', '--pca-samples', '256',
                '--out', str(walk))
    assert 'warning: ' in result.output and 'another network' in result.output


def test_directions_supervised_from_a_scores_csv(tmp_path):
    G = stylelens.load_generator('demo')
    seeds = list(range(60))
    score = seeds_to_ws(G, seeds)[:, 0].double().numpy() @ np.random.RandomState(0).randn(G.w_dim)
    (tmp_path / 's.csv').write_text('seed,planted\n' + ''.join(f'{s},{float(v)!r}\n' for s, v in zip(seeds, score)))
    out = tmp_path / 'sup.npz'
    result = ok('directions', 'supervised', '--scores', str(tmp_path / 's.csv'), '--layers', 'b4',
                '--figure-rows', '0', '--out', str(out))
    assert 'held-out r' in result.output and not (tmp_path / 'sup.png').exists()
    assert manifest(out)['extra']['files'] == ['sup.npz']
    dirs = load_directions(out)
    assert dirs.labels == ['planted'] and dirs.layer_indices(0) == [0] and dirs.scores[0] >= 0.8


def test_patch_writes_heat_map_table_and_manifest(tmp_path):
    out = tmp_path / 'patch.png'
    ok('patch', '--clean', '1', '--corrupt', '2', '--at', 'blocks', '--metric', 'pixels', '--out', str(out))
    rows = (tmp_path / 'patch.csv').read_text().splitlines()
    assert rows[0] == 'point,hook,channel,recovered' and rows[-1].startswith('b32,synthesis.b32,,')
    assert float(rows[-1].split(',')[-1]) == pytest.approx(1.0, abs=1e-12)
    recorded = manifest(out)
    assert recorded['extra']['all_at_once_max_abs_diff'] == 0 and recorded['options']['at'] == 'blocks'


def test_attribute_writes_arrays_per_hook_point(tmp_path):
    out = tmp_path / 'attr.png'
    ok('attribute', '--input', '1', '--at', 'b8.conv1,b16.conv0.affine', '--metric', 'region:0,0,16,16',
       '--out', str(out))
    with np.load(tmp_path / 'attr.npz') as arrays:
        assert set(arrays.files) == {'b8.conv1.channels', 'b8.conv1.positions', 'b16.conv0.affine.channels'}
        assert arrays['b8.conv1.positions'].shape == (8, 8)


def test_ablate_and_styles(tmp_path):
    out = tmp_path / 'ab.csv'
    ok('ablate', '--seeds', '0-1', '--at', 'b4.conv1', '--channels', '0-3', '--metric', 'factor:size', '--out', str(out))
    assert (tmp_path / 'ab.csv').read_text().splitlines()[0] == 'rank,channel,change,size'
    styles = tmp_path / 'styles.npz'
    ok('styles', '--seeds', '0-4', '--layers', 'b4', '--out', str(styles))
    with np.load(styles) as arrays:
        assert arrays['b4.conv1'].shape == (5, 64) and int(arrays['b4.conv1.ws_index']) == 0
        assert arrays['seeds'].tolist() == [0, 1, 2, 3, 4]
    rank = tmp_path / 'rank.csv'
    ok('styles', 'rank', '--region', '0,0,16,16', '--seeds', '0', '--probes', '4', '--sigma-seeds', '50',
       '--layers', 'b8', '--top', '2', '--out', str(rank))
    assert rank.read_text().splitlines()[0] == 'rank,layer,channel,score,in_rms,out_rms,locality'
    assert (tmp_path / 'rank.png').is_file()


@pytest.mark.parametrize('args, message', [
    (['directions', 'sefa', '--layers', 'b64', '--out', '{x}/d.npz'], "bad --layers 'b64'"),
    (['directions', 'pca', '--out', '{x}/d.txt'], 'expected a .npz file'),
    (['directions', 'pca', '--layers', 'b4,b99', '--out', '{x}/d.npz'], "bad --layers 'b4,b99'"),
    (['directions', 'supervised', '--scores', '{bad}', '--out', '{x}/d.npz'], "'abc' is not a finite number"),
    (['directions', 'supervised', '--scores', '{tmp}/missing.csv', '--out', '{x}/d.npz'], 'not found'),
    (['directions', 'benchmark', '--methods', 'ica', '--outdir', '{x}'], "unknown method 'ica'"),
    (['patch', '--clean', '1', '--corrupt', '2', '--at', 'b64', '--metric', 'pixels', '--out', '{x}/p.png'],
     "no hook point 'b64'"),
    (['patch', '--clean', '1', '--corrupt', '2', '--at', 'blocks', '--metric', 'region:0,0,99,9', '--out',
      '{x}/p.png'], 'bad region'),
    (['patch', '--clean', 'w:{tmp}/none.npz', '--corrupt', '2', '--at', 'blocks', '--metric', 'pixels', '--out',
      '{x}/p.png'], 'bad --clean'),
    (['attribute', '--input', '1', '--at', 'channels:b8.conv1', '--metric', 'pixels', '--out', '{x}/a.png'],
     'per channel already'),
    (['ablate', '--at', 'b4.conv1', '--channels', '70', '--metric', 'pixels', '--out', '{x}/a.csv'],
     'channels 0..63'),
    (['styles', 'rank', '--out', '{x}/r.csv'], 'exactly one of --scores'),
    (['styles', '--seeds', '0-3', '--layers', 'L9', '--out', '{x}/s.npz'], "bad --layers 'L9'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    (tmp_path / 'bad.csv').write_text('seed,score\n' + ''.join(f'{s},1.5\n' for s in range(30)) + '30,abc\n')
    filled = [a.format(x=tmp_path / 'x', bad=tmp_path / 'bad.csv', tmp=tmp_path) for a in args]
    assert message in one_line_error(tmp_path, *filled)


class Payload:
    def __reduce__(self):
        import os
        return os.system, ('touch PWNED',)


def test_console_script_refuses_a_classifier_that_would_run_code(tmp_path):
    torch.save({'format': 'stylelens-classifier', 'state_dict': Payload()}, tmp_path / 'evil.pt')
    (tmp_path / 'evil.pkl').write_bytes(pickle.dumps(Payload()))
    for name in ('evil.pt', 'evil.pkl'):
        result = run_stylelens('directions', 'supervised', '--classifier', name, '--seeds', '0-29', '--out',
                               'x/d.npz', cwd=tmp_path)
        assert result.returncode == 1 and 'Traceback' not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith('Error:')]
        assert len(errors) == 1 and 'does not load weights-only' in errors[0], result.stderr
    assert not (tmp_path / 'PWNED').exists() and not (tmp_path / 'x').exists()


def test_a_trained_classifier_scores_directions_and_patching(tmp_path):
    from stylelens.scratch.classifier import train_classifier

    train_classifier('shapes:256', tmp_path / 'cls', epochs=1, batch=32, lr=1e-3, seed=0, arch='small-cnn',
                     max_steps=2, width=8, device='cpu', precision='fp32', progress=False)
    model = tmp_path / 'cls' / 'classifier.pt'
    out = tmp_path / 'sq.npz'
    ok('directions', 'supervised', '--classifier', str(model), '--seeds', '0-39', '--targets', 'square',
       '--condition', 'circle', '--figure-rows', '0', '--out', str(out))
    assert load_directions(out).labels == ['square']
    ok('patch', '--clean', '1', '--corrupt', '2', '--at', 'styles', '--metric', f'classifier:{model}:square',
       '--out', str(tmp_path / 'p.png'))
    assert 'b4.conv1.affine' in (tmp_path / 'p.csv').read_text()
    assert "no score 'dog'" in one_line_error(tmp_path, 'directions', 'supervised', '--classifier', str(model),
                                               '--targets', 'dog', '--out', str(tmp_path / 'x' / 'd.npz'))
