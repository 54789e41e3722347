"""Every `stylelens train` model x precision x loss through the real CLI: one step, or a one-line refusal."""
from __future__ import annotations

import math
import re
import traceback
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from stylelens.cli import cli
from stylelens.scratch.losses import LOSSES, accepted_losses
from stylelens.scratch.models import MODELS


def train_precisions() -> tuple[str, ...]:
    """The `stylelens train --precision` choices: the one place to change when that vocabulary moves."""
    try:
        from stylelens.choices import TRAIN_PRECISION_CHOICES
    except ImportError:  # before stylelens/scratch/train.py was split
        from stylelens.scratch.train import PRECISIONS as TRAIN_PRECISION_CHOICES
    return tuple(TRAIN_PRECISION_CHOICES)


PRECISIONS = train_precisions()
DEVICES = ('cpu',) + (('cuda',) if torch.cuda.is_available() else ())
DATA = 'shapes:4'  # procedural, nothing to download; one step at the largest batch below
TINY = ('--epochs', '1', '--max-steps', '1', '--n-critic', '1', '--g-width', '2', '--d-width', '2', '--map-depth', '1',
        '--grid', '1', '--seed', '0')
DEFAULT_OPTIONS = {'--resolution': '8', '--batch': '2'}
MODEL_OPTIONS = {  # the few models that cannot take DEFAULT_OPTIONS
    'acgan-cifar10-classic': {'--resolution': '32'},  # its layout is fixed at 32x32
    'stylegan2-small': {'--batch': '4'},  # minibatch-std groups of 4
}
RUN_FILES = ('samples/final.png', 'samples/progress.gif', 'steps.csv', 'epochs.csv', 'losses.png', 'accuracy.png',
             'real_vs_generated.png', 'checkpoints/last.pt', 'manifest.json')
SUMMARY = re.compile(r'(?<![\w.])1 steps on (?P<device>\S+) \((?P<precision>\w+)\) in .*; last epoch d=(?P<d>\S+) '
                     r'g=(?P<g>\S+);')
XFAIL: dict[tuple[str, str, str], str] = {}  # (model, precision, loss) -> the bug, until it is fixed


def model_options(model: str) -> list[str]:
    """The size options of `model`: DEFAULT_OPTIONS with its own MODEL_OPTIONS over them, as CLI arguments."""
    options = {**DEFAULT_OPTIONS, **MODEL_OPTIONS.get(model, {})}
    return [arg for item in options.items() for arg in item]


def combinations() -> list:
    """One param per device x model x precision x loss (every loss of LOSSES: those a model rejects are refused)."""
    params = []
    for device in DEVICES:
        for model in MODELS:
            for precision in PRECISIONS:
                for loss in LOSSES:
                    bug = XFAIL.get((model, precision, loss))
                    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
                    params.append(pytest.param(device, model, precision, loss, marks=marks,
                                               id=f'{device}-{model}-{precision}-{loss}'))
    return params


def no_traceback(result: Result) -> None:
    """The command ended through click (exit code), not through an uncaught exception."""
    crash = result.exception if not isinstance(result.exception, SystemExit) else None
    shown = ''.join(traceback.format_exception(type(crash), crash, crash.__traceback__)) if crash else ''
    assert crash is None, f'uncaught exception (a traceback for the user):\n{shown}'
    assert 'Traceback' not in result.output


def named(message: str, choices: tuple[str, ...]) -> list[str]:
    """The choices that the message names as words."""
    return [choice for choice in choices if re.search(rf'(?<![\w-]){re.escape(choice)}(?![\w-])', message)]


def check_refused(result: Result, outdir: Path, valid: tuple[str, ...], every: bool = True) -> str:
    """Non-zero exit, one line `Error: ...` naming the valid choices (all, or one unless `every`), nothing written."""
    no_traceback(result)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0, result.output
    assert len(lines) == 1 and lines[0].startswith('Error: '), result.output
    found = named(lines[0], valid)
    assert found and (len(found) == len(valid) or not every), f'{lines[0]!r} names {found} of {valid}'
    written = [p for p in outdir.rglob('*') if p.is_file()] if outdir.exists() else []
    assert not written, f'refused after work: {written}'
    return lines[0]


def check_trained(result: Result, outdir: Path, device: str, precision: str) -> None:
    """Exit 0, the run's files, and a summary with the device, the precision used and finite losses."""
    no_traceback(result)
    assert result.exit_code == 0, result.output
    missing = [name for name in RUN_FILES if not (outdir / name).is_file()]
    assert not missing, f'missing outputs {missing}:\n{result.output}'
    match = SUMMARY.search(result.stdout)  # stdout alone from click 8.2 on, else with the progress bar's stderr
    assert match, result.output
    assert match['device'].split(':')[0] == device
    used = (precision,) if precision != 'auto' else tuple(p for p in PRECISIONS if p != 'auto')
    assert match['precision'] in used, match.group(0)
    assert math.isfinite(float(match['d'])) and math.isfinite(float(match['g'])), match.group(0)


@pytest.mark.parametrize(('device', 'model', 'precision', 'loss'), combinations())
def test_train_combination(device: str, model: str, precision: str, loss: str, tmp_path: Path,
                           one_thread: None) -> None:
    """Accepted losses train in every precision but fp16, which may be refused; other losses are refused."""
    outdir = tmp_path / 'run'
    args = ['train', '--model', model, '--precision', precision, '--loss', loss, '--data', DATA, '--device', device,
            *TINY, *model_options(model), '--outdir', str(outdir)]
    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    if loss not in accepted_losses(model):
        check_refused(result, outdir, accepted_losses(model))
    elif precision == 'fp16' and result.exit_code != 0:
        check_refused(result, outdir, tuple(p for p in PRECISIONS if p not in ('auto', 'fp16')), every=False)
    else:
        check_trained(result, outdir, device, precision)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_mapping_network_under_autocast(dtype: torch.dtype) -> None:
    """The mapping network's w_avg update and truncation work on the half-precision w that autocast gives."""
    from stylelens.scratch.models import MappingDCGANGenerator

    torch.manual_seed(0)
    G = MappingDCGANGenerator(z_dim=8, w_dim=8, img_resolution=8, base_channels=2, map_depth=1)
    with torch.autocast('cpu', dtype=dtype):
        ws = G.mapping(torch.randn([4, 8]), None, update_emas=True)
        truncated = G.mapping(torch.randn([4, 8]), None, truncation_psi=0.5, truncation_cutoff=1)
    assert ws.dtype == dtype and truncated.dtype == dtype
    assert G.mapping.w_avg.dtype == torch.float32 and G.mapping.w_avg.abs().sum() > 0
