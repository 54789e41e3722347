"""Hyper-parameter sweeps: one `train` run per setting of a grid of comma lists, scored and ranked.

Each setting trains in `SWEEP/<slug>/` (e.g. `lr=2e-4_optimizer=adam`); a finished run (one with its
`manifest.json`) is skipped and an interrupted one resumed, so rerunning a sweep continues it. The ranking score is
named by `score_name`: `fid` (the final FID against the training set) when the runs measure it (`--fid-every`),
otherwise `classifier_js`, the Jensen-Shannon divergence (bits, lower is better) between the classes a trained
classifier sees in G's samples and the data's classes, which is not an FID.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
from pathlib import Path
from typing import Any, Callable

from stylelens.errors import StylelensError
from stylelens.loading.runs import RUN_CHECKPOINT, load_run_generator
from stylelens.outputs import atomic_write_text, ensure_outdir, write_manifest
from stylelens.scratch.config import OPTIMIZERS, TrainConfig, resolve_config
from stylelens.scratch.train import train
from stylelens.viz import new_figure, save_figure

SCORE_NAME = 'classifier_js'
FID_NAME = 'fid'
LOSSES = ('loss_d', 'loss_g')


def _positive_float(text: str) -> float:
    """A number above 0."""
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _positive_int(text: str) -> int:
    """A whole number above 0."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _optimizer(text: str) -> str:
    """One of OPTIMIZERS."""
    if text not in OPTIMIZERS:
        raise ValueError(text)
    return text


# TrainConfig field -> (what a value must be, its parser, an example list)
SWEPT: dict[str, tuple[str, Callable[[str], Any], str]] = {
    'lr': ('a positive number', _positive_float, '5e-5,1e-4,2e-4'),
    'optimizer': (f"one of {', '.join(OPTIMIZERS)}", _optimizer, 'adam,rmsprop'),
    'g_depth': ('a whole number >= 1', _positive_int, '1,2'),
    'map_depth': ('a whole number >= 1', _positive_int, '2,8'),
    'g_width': ('a whole number >= 1', _positive_int, '32,64'),
    'd_width': ('a whole number >= 1', _positive_int, '32,64'),
}


def option_name(field: str) -> str:
    """`map_depth` -> `map-depth`, as on the command line."""
    return field.replace('_', '-')


def parse_list(field: str, text: str) -> list[str]:
    """The checked values of a comma list for `field` (kept as typed, for folder names); one-line error otherwise."""
    what, parse, example = SWEPT[field]
    values = [part.strip() for part in text.split(',')]
    for value in values:
        try:
            parse(value)
        except ValueError:
            raise StylelensError(f'bad --{option_name(field)} {text!r}: {value!r} is not {what}; give a comma list, '
                                 f'e.g. {example}') from None
    if len(set(values)) != len(values):
        raise StylelensError(f'bad --{option_name(field)} {text!r}: a value is repeated')
    return values


def split_grid(lists: dict[str, list[str]]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(parsed single values, for every run; the lists of two or more values, which make the grid)."""
    fixed = {field: SWEPT[field][1](values[0]) for field, values in lists.items() if len(values) == 1}
    return fixed, {field: values for field, values in lists.items() if len(values) > 1}


def settings(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, in the order given (the first field varies slowest)."""
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def slug(setting: dict[str, str]) -> str:
    """The setting's folder name, e.g. `lr=2e-4_optimizer=adam` (`default` for an empty grid)."""
    return '_'.join(f'{option_name(k)}={v}' for k, v in setting.items()) or 'default'


def describe(setting: dict[str, str]) -> str:
    """The setting for people, e.g. `lr=2e-4 optimizer=adam`."""
    return ' '.join(f'{option_name(k)}={v}' for k, v in setting.items()) or 'default'


def config_for(base: TrainConfig, setting: dict[str, str]) -> TrainConfig:
    """`base` with the setting's values, parsed, checked and with defaults filled in."""
    values = {field: SWEPT[field][1](text) for field, text in setting.items()}
    return resolve_config(dataclasses.replace(base, **values))


def is_finished(rundir: Path) -> bool:
    """Whether a run folder holds a completed run (train writes `manifest.json` last)."""
    return (rundir / 'manifest.json').is_file()


def run_setting(config: TrainConfig, rundir: Path, progress: bool) -> str:
    """Train one setting unless already finished, resuming an interrupted run; returns what was done."""
    if is_finished(rundir):
        return 'skipped (finished)'
    resume = (rundir / RUN_CHECKPOINT).is_file()
    train(config, rundir, resume=resume, progress=progress)
    return 'resumed' if resume else 'trained'


def final_losses(rundir: Path) -> dict[str, float]:
    """The last epoch's mean losses from `epochs.csv`."""
    last = read_log(rundir, 'epochs.csv')[-1]
    return {k: last[k] for k in LOSSES}


def read_log(rundir: Path, name: str) -> list[dict[str, float]]:
    """One of a run's CSV logs (`epochs.csv`, `fid.csv`) as rows of floats."""
    with open(rundir / name, newline='') as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@dataclasses.dataclass
class Scorer:
    """Scores a run's final generator with a trained classifier: `score_name` is the ranked metric (lower wins)."""

    classifier: Any
    reference_labels: Any
    num: int
    seed: int = 0
    batch: int = 64
    score_name: str = SCORE_NAME

    def __call__(self, rundir: Path) -> dict[str, float]:
        """`classifier_js` (bits), diversity (1 is real-like) and missing modes of the run's final G."""
        from stylelens.scratch.classifier import mode_report

        G = load_run_generator(rundir).to(self.classifier.device)
        report = mode_report(G, self.classifier, self.num, seed=self.seed, batch=self.batch,
                             reference_labels=self.reference_labels, progress=False)
        return {self.score_name: report['js'], 'classifier_diversity': report['diversity'],
                'classifier_missing_modes': report['missing_modes']}


def make_scorer(classifier_path: Path, data: str, num: int, device: str) -> Scorer:
    """A classifier scorer whose reference is the class histogram of the training data."""
    from stylelens.datasets import load_dataset
    from stylelens.devices import pick_device
    from stylelens.scratch.classifier import load_classifier

    classifier = load_classifier(classifier_path, pick_device(device))
    return Scorer(classifier, load_dataset(data, 'train').labels, num)


def read_fid(rundir: Path) -> dict[str, float]:
    """A run's final FID, its best FID and the epoch of the best, from `fid.csv`."""
    rows = read_log(rundir, 'fid.csv')
    best = min(rows, key=lambda row: row['fid'])
    return {FID_NAME: rows[-1]['fid'], 'fid_min': best['fid'], 'fid_best_epoch': int(best['epoch'])}


def best_row(rows: list[dict[str, Any]], score_name: str | None) -> dict[str, Any] | None:
    """The row with the lowest score, or None when runs are not scored."""
    return min(rows, key=lambda row: row[score_name]) if score_name else None


def write_table(rows: list[dict[str, Any]], outdir: Path) -> None:
    """`results.csv` and `results.md`: one row per setting."""
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(outdir / 'results.csv', buffer.getvalue())
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(_cell(row[c]) for c in columns) + ' |' for row in rows]
    atomic_write_text(outdir / 'results.md', '\n'.join(lines) + '\n')


def _cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits."""
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def scores_figure(rows: list[dict[str, Any]], score_name: str | None, path: Path) -> Path:
    """Bars of each setting's score (or, unscored, its final losses)."""
    fig = new_figure(max(6, 1.2 * len(rows)), 4)
    ax = fig.add_subplot()
    names = [row['setting'] for row in rows]
    keys = [score_name] if score_name else list(LOSSES)
    width = 0.8 / len(keys)
    for idx, key in enumerate(keys):
        ax.bar([i + idx * width for i in range(len(rows))], [row[key] for row in rows], width, label=key)
    ax.set_xticks([i + (len(keys) - 1) * width / 2 for i in range(len(rows))], names, rotation=30, ha='right',
                  fontsize='small')
    titles = {FID_NAME: 'final FID vs the training set (lower is better)',
              SCORE_NAME: f'{SCORE_NAME} (lower is better; not an FID)', None: 'final losses (no score: no classifier)'}
    title = titles[score_name]
    ax.set(title=title)
    ax.legend(fontsize='small')
    return save_figure(fig, path, tight=True)


def curves_figure(rows: list[dict[str, Any]], outdir: Path, path: Path) -> Path:
    """Per-epoch mean G (solid) and D (dashed) loss of every setting."""
    fig = new_figure(8, 4)
    ax = fig.add_subplot()
    for row in rows:
        epochs = read_log(outdir / row['run'], 'epochs.csv')
        line, = ax.plot([e['epoch'] for e in epochs], [e['loss_g'] for e in epochs], 'o-', label=row['setting'])
        ax.plot([e['epoch'] for e in epochs], [e['loss_d'] for e in epochs], 'o--', color=line.get_color())
    ax.set(xlabel='epoch', ylabel='loss', title='per-epoch losses (solid G, dashed D)')
    ax.legend(fontsize='small')
    return save_figure(fig, path, tight=True)


def fid_curves_figure(rows: list[dict[str, Any]], outdir: Path, path: Path) -> Path:
    """FID per measured epoch of every setting."""
    fig = new_figure(8, 4)
    ax = fig.add_subplot()
    for row in rows:
        points = read_log(outdir / row['run'], 'fid.csv')
        ax.plot([int(p['epoch']) for p in points], [p['fid'] for p in points], 'o-', label=row['setting'])
    ax.set(xlabel='epoch', ylabel='FID', title='FID per epoch (lower is better)')
    ax.legend(fontsize='small')
    return save_figure(fig, path, tight=True)


def sweep(base: TrainConfig, grid: dict[str, list[str]], outdir: str | Path, scorer: Scorer | None = None,
          progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every setting of `grid` over `base` in `outdir/<slug>/`, score the runs and write the table, plots and
    manifest; returns the rows, the score name (None if unscored) and the best row."""
    outdir = ensure_outdir(outdir)
    todo = [(setting, config_for(base, setting)) for setting in settings(grid)]
    rows = []
    for setting, config in todo:
        rundir = outdir / slug(setting)
        echo(f'{describe(setting)}: {run_setting(config, rundir, progress)}')
        scores = {**(read_fid(rundir) if base.fid_every else {}), **(scorer(rundir) if scorer else {})}
        rows.append(dict(setting=describe(setting), **setting, **scores, **final_losses(rundir), run=rundir.name))
    score_name = FID_NAME if base.fid_every else scorer.score_name if scorer else None
    write_table(rows, outdir)
    scores_figure(rows, score_name, outdir / 'scores.png')
    curves_figure(rows, outdir, outdir / 'scores_per_epoch.png')
    if base.fid_every:
        fid_curves_figure(rows, outdir, outdir / 'fid_per_epoch.png')
    result = dict(score_name=score_name, rows=rows, best=best_row(rows, score_name))
    write_manifest(outdir, command='sweep', options=dict(grid=grid, base=dataclasses.asdict(base)), extra=result)
    return result
