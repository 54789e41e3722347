"""Training the from-scratch GANs: short real runs on the shared CIFAR-10 subset's dogs at 16x16 with tiny
widths, checking outputs, determinism, resume equivalence (also after Ctrl-C) and the `train` verb's errors."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import run_stylelens as stylelens
from stylelens.cli import cli
from stylelens.errors import StylelensError
from stylelens.loading.runs import RUN_CHECKPOINT
from stylelens.scratch import train as st
from stylelens.scratch.config import TrainConfig, parse_betas, parse_lr_schedule
from stylelens.scratch.train import train

GRID = 4
RESOLUTION = 16
pytestmark = pytest.mark.usefixtures('one_thread')


def tiny(data: str, **options) -> TrainConfig:
    """A seconds-long fp32 CPU configuration: 16x16, widths 8, batch 32, 2 steps per epoch."""
    defaults = dict(model='dcgan', data=data, epochs=1, batch=32, resolution=RESOLUTION, g_width=8, d_width=8,
                    precision='fp32', device='cpu', grid=GRID, max_steps=2)
    return TrainConfig(**{**defaults, **options})


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def g_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / 'checkpoints' / 'last.pt', weights_only=False)['G']


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_dcgan_run_writes_every_output(dogs: str, tmp_path: Path) -> None:
    summary = train(tiny(dogs, epochs=2), tmp_path, progress=False)
    assert summary['steps'] == 4 and summary['precision'] == 'fp32'
    side = GRID * RESOLUTION
    for name in ('epoch000', 'epoch001', 'epoch002', 'final'):
        assert Image.open(tmp_path / 'samples' / f'{name}.png').size == (side, side)
    frames = iio.imread(tmp_path / 'samples' / 'progress.gif', index=None)
    assert frames.shape[:3] == (2 + 1, side, side)
    for name in ('losses.png', 'accuracy.png', 'real_vs_generated.png'):
        assert Image.open(tmp_path / name).size[0] > 300
    steps = read_csv(tmp_path / 'steps.csv')
    assert list(steps[0]) == ['step', 'epoch', 'loss_d', 'acc_real', 'acc_fake', 'loss_g', 'lr_g', 'lr_d']
    assert [row['step'] for row in steps] == ['1', '2', '3', '4'] and steps[-1]['epoch'] == '2'
    assert all(math.isfinite(float(row[k])) for row in steps for k in ('loss_d', 'loss_g'))
    epochs = read_csv(tmp_path / 'epochs.csv')
    assert [row['epoch'] for row in epochs] == ['1', '2']
    assert float(epochs[0]['loss_d']) == pytest.approx((float(steps[0]['loss_d']) + float(steps[1]['loss_d'])) / 2)
    manifest = json.loads((tmp_path / 'manifest.json').read_text())
    assert manifest['command'] == 'train' and manifest['options']['loss'] == 'bce'
    assert manifest['extra']['dataset']['images'] == 475 and manifest['extra']['final_metrics']['epoch'] == 2


def test_same_seed_same_numbers(dogs: str, tmp_path: Path) -> None:
    for name in ('a', 'b'):
        train(tiny(dogs, max_steps=3, seed=7), tmp_path / name, progress=False)
    assert read_csv(tmp_path / 'a' / 'steps.csv') == read_csv(tmp_path / 'b' / 'steps.csv')
    other = tmp_path / 'other'
    train(tiny(dogs, max_steps=3, seed=8), other, progress=False)
    assert read_csv(other / 'steps.csv') != read_csv(tmp_path / 'a' / 'steps.csv')


def test_resume_equals_uninterrupted(dogs: str, tmp_path: Path) -> None:
    config = tiny(dogs, epochs=2, lr_schedule='step:1:0.5')
    train(config, tmp_path / 'whole', progress=False)
    train(tiny(dogs, epochs=1, lr_schedule='step:1:0.5'), tmp_path / 'split', progress=False)
    train(config, tmp_path / 'split', resume=True, progress=False)
    assert_same_weights(g_weights(tmp_path / 'whole'), g_weights(tmp_path / 'split'))
    assert read_csv(tmp_path / 'whole' / 'steps.csv') == read_csv(tmp_path / 'split' / 'steps.csv')
    assert read_csv(tmp_path / 'split' / 'steps.csv')[-1]['lr_g'] == '0.0001'
    assert len(iio.imread(tmp_path / 'split' / 'samples' / 'progress.gif', index=None)) == 3


def test_ctrl_c_saves_a_checkpoint_that_resumes_mid_epoch(dogs: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny(dogs, max_steps=3)
    train(config, tmp_path / 'whole', progress=False)
    step_call = st.Step.__call__

    def interrupt_after_first_step(self: st.Step, batches: list) -> dict[str, float]:
        metrics = step_call(self, batches)
        os.kill(os.getpid(), signal.SIGINT)
        return metrics

    monkeypatch.setattr(st.Step, '__call__', interrupt_after_first_step)
    with pytest.raises(st.TrainingInterrupted, match='--resume'):
        train(config, tmp_path / 'cut', progress=False)
    assert torch.load(tmp_path / 'cut' / 'checkpoints' / 'last.pt', weights_only=False)['step_in_epoch'] == 1
    monkeypatch.undo()
    train(config, tmp_path / 'cut', resume=True, progress=False)
    assert_same_weights(g_weights(tmp_path / 'whole'), g_weights(tmp_path / 'cut'))


@pytest.mark.parametrize('model, options, columns', [
    ('acgan', {}, {'aux_d', 'aux_g', 'acc_real'}),
    ('wgan-gp', dict(n_critic=2), {'wasserstein', 'gp'}),
    ('mapping-dcgan', dict(map_depth=2), {'acc_fake'}),
])
def test_other_models_train(dogs: str, tmp_path: Path, model: str, options: dict, columns: set[str]) -> None:
    summary = train(tiny(dogs, model=model, **options), tmp_path, progress=False)
    steps = read_csv(tmp_path / 'steps.csv')
    assert columns <= set(steps[0]) and len(steps) == 2
    assert all(math.isfinite(float(v)) for row in steps for v in row.values())
    assert summary['final_metrics']['loss_g'] == pytest.approx(sum(float(r['loss_g']) for r in steps) / 2)
    if model == 'mapping-dcgan':
        assert g_weights(tmp_path)['mapping.w_avg'].abs().sum() > 0


def test_bf16_run_is_finite(dogs: str, tmp_path: Path) -> None:
    summary = train(tiny(dogs, precision='auto', max_steps=1), tmp_path, progress=False)
    assert summary['precision'] == 'bf16'
    assert all(math.isfinite(float(v)) for v in read_csv(tmp_path / 'steps.csv')[0].values())


def test_cli_trains_and_refuses_to_overwrite(dogs: str, tmp_path: Path) -> None:
    args = ['train', '--model', 'dcgan', '--data', dogs, '--resolution', '16', '--g-width', '8', '--d-width', '8',
            '--batch', '32', '--epochs', '1', '--max-steps', '1', '--grid', '2', '--precision', 'fp32',
            '--device', 'cpu', '--outdir', str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert '1 steps on cpu (fp32)' in result.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and 'already holds a training run' in again.output


def test_option_parsers() -> None:
    assert parse_betas('0.5,0.999') == (0.5, 0.999)
    assert parse_lr_schedule('step:15:0.1') == ('step', 15, 0.1)
    assert parse_lr_schedule('cosine')[0] == 'cosine'
    for bad in ('0.5', '0.5,1.2', 'a,b'):
        with pytest.raises(StylelensError, match='--betas'):
            parse_betas(bad)
    for bad in ('linear', 'step:0:0.1', 'step:5', 'step:5:2'):
        with pytest.raises(StylelensError, match='--lr-schedule'):
            parse_lr_schedule(bad)


@pytest.mark.parametrize('extra, message', [
    (['--model', 'stylegan9'], "unknown model 'stylegan9'"),
    (['--model', 'dcgan', '--betas', '0.5'], "bad --betas '0.5'"),
    (['--model', 'dcgan', '--lr-schedule', 'step:x'], "bad --lr-schedule 'step:x'"),
])
def test_console_script_bad_options(tmp_path: Path, extra: list[str], message: str) -> None:
    result = stylelens('train', '--data', 'cifar10:nowhere.tar.gz', '--outdir', str(tmp_path / 'run'), *extra)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('Error:') and message in lines[0], result.stderr


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ['train', '--help'])
    assert result.exit_code == 0 and 'Example' in result.output and '--lr-schedule' in result.output


def test_conditional_wgan_gp_on_mnist_files(tmp_path):
    """The comparison study's conditional WGAN-GP: one-hot label maps reach a critic without batch norm."""
    from test_scratch_data import _write_idx_folder

    _write_idx_folder(tmp_path / 'mnist', n_train=32, side=28)
    config = tiny(f"mnist:{tmp_path / 'mnist'}", model='cgan', loss='wgan-gp', resolution=28, batch=8, n_critic=2)
    train(config, tmp_path / 'run', progress=False)
    rows = read_csv(tmp_path / 'run' / 'steps.csv')
    assert {'wasserstein', 'gp'} <= set(rows[0]) and all(math.isfinite(float(r['gp'])) for r in rows)
    payload = torch.load(tmp_path / 'run' / 'generator.pt', weights_only=True)
    assert payload['build_kwargs']['d_norm'] == 'layer' and payload['model'] == 'cgan'
    with pytest.raises(StylelensError, match='batch norm couples'):
        train(dataclasses.replace(config, d_norm='batch'), tmp_path / 'other', progress=False)


def test_fid_every_records_fid_per_epoch_and_reports_the_best(tmp_path):
    """FID after epochs 2 and 3 (the last) with seeded random Inception weights in the real file's layout."""
    from test_metrics import random_inception_state

    weights = tmp_path / 'inception.pth'
    torch.save(random_inception_state(), weights)
    os.environ['STYLELENS_CACHE'] = str(tmp_path / 'cache')
    try:
        summary = train(tiny('shapes:40', epochs=3, max_steps=1, fid_every=2, fid_num=4, inception=str(weights)),
                        tmp_path / 'run', progress=False)
    finally:
        del os.environ['STYLELENS_CACHE']
    rows = read_csv(tmp_path / 'run' / 'fid.csv')
    assert [int(r['epoch']) for r in rows] == [2, 3] and all(float(r['fid']) > 0 for r in rows)
    report = summary['fid']
    assert report['measurements'] == 2 and report['min'] <= report['mean'] <= report['max']
    assert report['best_epoch'] in (2, 3) and (tmp_path / 'run' / 'fid.png').is_file()
    assert 'fid' in (tmp_path / 'run' / 'manifest.json').read_text()


def test_fp16_trains_with_loss_scaling_and_resumes_exactly(cifar, tmp_path):
    whole = train(tiny(cifar, epochs=2, precision='fp16'), tmp_path / 'whole', progress=False)
    train(tiny(cifar, epochs=1, precision='fp16'), tmp_path / 'part', progress=False)
    resumed = train(tiny(cifar, epochs=2, precision='fp16'), tmp_path / 'part', resume=True, progress=False)
    assert whole['precision'] == 'fp16' and whole['final_metrics'] == resumed['final_metrics']
    assert all(math.isfinite(v) for v in whole['final_metrics'].values())
    assert 'scaler' in torch.load(tmp_path / 'part' / RUN_CHECKPOINT, weights_only=False)
