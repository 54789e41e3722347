"""`stylelens sweep`: tiny real sweeps on the shared CIFAR-10 subset at 16x16 through the console script: the
table and plots, ranking with a tiny classifier, resuming by skipping finished runs, and bad lists."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import run_stylelens as stylelens
from stylelens.errors import StylelensError
from stylelens.scratch.sweep import parse_list, settings, slug, split_grid

TINY = ['--model', 'dcgan', '--epochs', '1', '--batch', '32', '--resolution', '16', '--g-width', '8', '--d-width',
        '8', '--precision', 'fp32', '--device', 'cpu', '--grid', '4', '--max-steps', '2']


@pytest.fixture(scope='module')
def classifier(cifar: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier trained for a few steps at 16x16 through `stylelens classifier train`."""
    outdir = tmp_path_factory.mktemp('classifier')
    result = stylelens('classifier', 'train', '--data', cifar, '--resolution', '16', '--epochs', '1', '--max-steps',
                       '5', '--batch', '64', '--width', '8', '--precision', 'fp32', '--device', 'cpu', '--outdir',
                       str(outdir))
    assert result.returncode == 0, result.stderr
    return outdir / 'classifier.pt'


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_lr_sweep_writes_table_and_plots_and_resumes(cifar: str, tmp_path: Path) -> None:
    args = ['sweep', *TINY, '--data', f'{cifar}:dog', '--lr', '1e-4,2e-4', '--outdir', str(tmp_path)]
    result = stylelens(*args)
    assert result.returncode == 0, result.stderr
    assert 'no score: pass --classifier to rank runs' in result.stdout
    rows = read_rows(tmp_path / 'results.csv')
    assert [row['run'] for row in rows] == ['lr=1e-4', 'lr=2e-4']
    assert all(float(row['loss_g']) > 0 for row in rows)
    assert len((tmp_path / 'results.md').read_text().splitlines()) == 2 + 2
    for name in ('scores.png', 'scores_per_epoch.png', 'lr=2e-4/generator.pt'):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / 'manifest.json').read_text())['extra']['score_name'] is None
    again = stylelens(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count('skipped (finished)') == 2


def test_classifier_names_best_setting(cifar: str, classifier: Path, tmp_path: Path) -> None:
    result = stylelens('sweep', *TINY, '--data', cifar, '--lr', '1e-4,5e-4', '--classifier', str(classifier),
                       '--num', '32', '--outdir', str(tmp_path))
    assert result.returncode == 0, result.stderr
    best = [line for line in result.stdout.splitlines() if line.startswith('best: lr=')]
    assert len(best) == 1 and 'classifier_js' in best[0] and 'not an FID' in best[0]
    rows = read_rows(tmp_path / 'results.csv')
    assert len(rows) == 2 and all(0 <= float(row['classifier_js']) <= 1 for row in rows)


def test_bad_list_is_one_line(tmp_path: Path) -> None:
    result = stylelens('sweep', '--model', 'dcgan', '--data', 'cifar10:x.tar.gz', '--lr', '1e-4,x', '--outdir',
                       str(tmp_path / 'out'))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["Error: bad --lr '1e-4,x': 'x' is not a positive number; give a "
                                                  "comma list, e.g. 5e-5,1e-4,2e-4"]


def test_grid_helpers() -> None:
    fixed, grid = split_grid({'lr': parse_list('lr', '1e-4, 2e-4'), 'optimizer': parse_list('optimizer', 'adam'),
                              'map_depth': parse_list('map_depth', '2,8')})
    assert fixed == {'optimizer': 'adam'}
    assert [slug(s) for s in settings(grid)] == ['lr=1e-4_map-depth=2', 'lr=1e-4_map-depth=8',
                                                 'lr=2e-4_map-depth=2', 'lr=2e-4_map-depth=8']
    for field, text in (('optimizer', 'sgd'), ('map_depth', '0'), ('lr', '1e-4,1e-4')):
        with pytest.raises(StylelensError, match=f'bad --{field.replace("_", "-")}'):
            parse_list(field, text)


def test_fid_names_best_setting_of_a_g_depth_sweep(tmp_path: Path) -> None:
    """With --fid-every the sweep ranks by the runs' final FID (random Inception weights in the real layout)."""
    import torch
    from test_metrics import random_inception_state

    weights = tmp_path / 'inception.pth'
    torch.save(random_inception_state(), weights)
    result = stylelens('sweep', *TINY, '--data', 'shapes:40', '--g-depth', '1,2', '--fid-every', '1', '--fid-num',
                       '4', '--inception', str(weights), '--outdir', str(tmp_path / 'sweep'), timeout=300)
    assert result.returncode == 0, result.stderr
    best = [line for line in result.stdout.splitlines() if line.startswith('best: g-depth=')]
    assert len(best) == 1 and '(fid ' in best[0] and 'not an FID' not in best[0]
    rows = read_rows(tmp_path / 'sweep' / 'results.csv')
    assert [row['run'] for row in rows] == ['g-depth=1', 'g-depth=2'] and all(float(r['fid']) > 0 for r in rows)
    assert (tmp_path / 'sweep' / 'fid_per_epoch.png').is_file()
