"""The embedded demo network: a 32x32 StyleGAN2 that stylelens trained on its procedural shapes set.

`python -m stylelens.demo_network export RUN [OUT]` exports a `stylelens train --model stylegan2-small` run folder
as the demo (default OUT: checkpoints/demo.pkl): the run's official-format snapshot (G, D, G_ema) with the training
command and length recorded in `training_set_kwargs`, and beside it the run's training checkpoint
(`demo-train.pt`). `python -m stylelens.demo_network train RUN EPOCHS [DEVICE]` (`make demo-train`) continues that
training to EPOCHS epochs in the run folder RUN: from RUN's own checkpoint once it has one, else from the shipped
`demo-train.pt`, with the options recorded in the checkpoint. `python -m stylelens.demo_network strip RUN OUT` draws the
README's training-progress strip from the run's per-epoch sample grids.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from stylelens.errors import StylelensError
from stylelens.loading.network import load_network
from stylelens.loading.official_writer import dump_snapshot
from stylelens.loading.runs import RUN_CHECKPOINT, RUN_SNAPSHOT, load_checkpoint
from stylelens.outputs import atomic_path
from stylelens.scratch.config import TrainConfig
from stylelens.scratch.train import train
from stylelens.viz import new_figure, save_figure

TRAIN_CHECKPOINT = 'demo-train.pt'
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / 'checkpoints' / TRAIN_CHECKPOINT
TRAIN_COMMAND = ('stylelens train --model stylegan2-small --data shapes:50000 --g-width 32 --d-width 32 '
                 '--batch 32 --precision fp32 --epochs 40 --seed 0 --outdir runs/demo')


def run_record(run: Path) -> dict:
    """What the run did, from its logs: the steps taken and the images seen."""
    steps = (run / 'steps.csv').read_text().splitlines()
    last_step = int(steps[-1].split(',')[0]) if len(steps) > 1 else 0
    config = json.loads((run / 'manifest.json').read_text())['options'] if (run / 'manifest.json').is_file() else {}
    return dict(images_seen=last_step * int(config.get('batch', 32)), steps=last_step)


def export_demo(run: str | Path, out: str | Path = 'checkpoints/demo.pkl', hours: float | None = None) -> Path:
    """Write the run's snapshot as the demo network, with how it was trained, and its training checkpoint beside
    it (as TRAIN_CHECKPOINT)."""
    run, out = Path(run), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    nets = load_network(run / RUN_SNAPSHOT, progress=False)
    kwargs = dict(nets['training_set_kwargs'] or {})
    kwargs.update(class_name=None, resolution=nets['G_ema'].img_resolution, use_labels=False,
                  command=TRAIN_COMMAND, **run_record(run),
                  note='stylelens demo: StyleGAN2 trained on procedural shapes (see README)')
    if hours is not None:
        kwargs['train_hours'] = hours
    dump_snapshot(dict(G=nets['G'], D=nets['D'], G_ema=nets['G_ema'], augment_pipe=None, training_set_kwargs=kwargs),
                  out)
    with atomic_path(out.with_name(TRAIN_CHECKPOINT)) as tmp:
        shutil.copyfile(run / RUN_CHECKPOINT, tmp)
    return out


def continue_training(run: str | Path = 'runs/demo', epochs: int | str = 30, device: str = 'auto',
                      shipped: Path = SHIPPED_CHECKPOINT) -> dict:
    """Continue the demo's training to `epochs` epochs in `run` with the options its checkpoint records (only the
    device may differ): from `run`'s own checkpoint once it has one, else from the shipped one."""
    own = Path(run) / RUN_CHECKPOINT
    source = own if own.is_file() else Path(shipped)
    if not source.is_file():
        raise StylelensError(f'no demo training checkpoint: neither {own} nor {shipped} exists (the shipped one is in '
                             f'the source tree, checkpoints/{TRAIN_CHECKPOINT})')
    config = TrainConfig(**{**load_checkpoint(source)['config'], 'epochs': int(epochs), 'device': device})
    resumed = source == own
    return train(config, run, resume=resumed, resume_from=None if resumed else source)


def training_strip(run: str | Path, out: str | Path, panels: int = 6, cells: int = 4) -> Path:
    """The top-left `cells` x `cells` samples of evenly spaced epoch grids (first and last included), side by side
    with the images seen under each."""
    run = Path(run)
    grids = sorted((run / 'samples').glob('epoch*.png'))
    picks = [grids[round(i * (len(grids) - 1) / (panels - 1))] for i in range(panels)]
    options = json.loads((run / 'manifest.json').read_text())['options']
    batch, grid = int(options['batch']), int(options['grid'])
    steps_per_epoch = run_record(run)['steps'] / max(int(grids[-1].stem[5:]), 1)
    fig = new_figure(2.2 * panels, 2.6)
    for idx, path in enumerate(picks, start=1):
        image = np.asarray(Image.open(path))
        side = image.shape[0] // grid
        ax = fig.add_subplot(1, panels, idx)
        ax.imshow(image[:side * cells, :side * cells], interpolation='nearest')
        ax.set_title(f'{int(path.stem[5:]) * steps_per_epoch * batch / 1000:.0f} kimg', fontsize='small')
        ax.axis('off')
    return save_figure(fig, Path(out), tight=True)


if __name__ == '__main__':
    commands = {'export': export_demo, 'strip': training_strip, 'train': continue_training}
    if len(sys.argv) < 3 or sys.argv[1] not in commands:
        sys.exit('usage: python -m stylelens.demo_network export RUN [OUT] | strip RUN OUT | train RUN EPOCHS [DEVICE]')
    try:
        commands[sys.argv[1]](*sys.argv[2:5])
    except StylelensError as error:
        sys.exit(f'error: {error}')
