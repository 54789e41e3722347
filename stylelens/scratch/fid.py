"""FID during training (`stylelens train --fid-every K`): the scorer, the per-epoch record and its report.

The real side is the training set itself (Inception statistics cached on disk by dataset hash), the fake side
`num` samples of the run's generator (its moving average where it keeps one) with fixed seeds, so the numbers of
one run are comparable across epochs. FID falls as `num` grows: compare runs only at equal `num`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stylelens.viz import new_figure, save_figure


def make_fid_scorer(dataset: Any, num: int, device: torch.device, inception: str | None) -> Any:
    """An FIDScorer against `dataset` (an ImageDataset); a one-line error says how to get the Inception weights."""
    from stylelens.metrics import FIDScorer

    return FIDScorer(dataset, num=num, device=device, inception=inception, progress=False)


def fid_due(epoch: int, every: int, last_epoch: int) -> bool:
    """Whether FID is measured after `epoch`: every `every` epochs and always after the last one."""
    return every > 0 and (epoch % every == 0 or epoch == last_epoch)


def measure(scorer: Any, G: nn.Module, epoch: int, step: int) -> dict[str, float]:
    """One record of the FID history: the epoch, step and FID of G."""
    return dict(epoch=epoch, step=step, fid=float(scorer.score(G)))


def fid_report(history: list[dict[str, float]]) -> dict[str, float] | None:
    """min, mean, max and last FID and the epoch of the best one; None when FID was never measured."""
    if not history:
        return None
    values = [row['fid'] for row in history]
    best = min(history, key=lambda row: row['fid'])
    return dict(min=min(values), mean=math.fsum(values) / len(values), max=max(values), last=values[-1],
                best_epoch=int(best['epoch']), measurements=len(values))


def fid_figure(history: list[dict[str, float]], num: int, path: Path) -> Path:
    """FID per epoch with the best epoch marked."""
    fig = new_figure(6, 3.5)
    ax = fig.add_subplot()
    epochs, values = [int(r['epoch']) for r in history], [r['fid'] for r in history]
    ax.plot(epochs, values, 'o-')
    best = min(range(len(values)), key=values.__getitem__)
    ax.plot([epochs[best]], [values[best]], '*', markersize=14, label=f'best: {values[best]:.2f} (epoch {epochs[best]})')
    ax.set(xlabel='epoch', ylabel=f'FID ({num} samples vs training set)', title='FID during training')
    ax.legend(fontsize='small')
    return save_figure(fig, path, tight=True)
