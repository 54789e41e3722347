"""Scores per seed, the input of supervised directions and of style-channel ranking: read from a CSV
`seed,score[,score2...]` (a header row names the scores), or measured by a scorer on the generated images."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stylelens import distributed
from stylelens.errors import StylelensError
from stylelens.latents import MAX_SEED
from stylelens.scorers import Scorer


@dataclass
class SeedScores:
    """Seeds [N] with their scores [N, K] under K names, and where they came from."""

    seeds: np.ndarray
    names: list[str]
    values: np.ndarray
    source: str

    def pick(self, names: Sequence[str] | None) -> SeedScores:
        """Only the named columns (all when None); an unknown name is a one-line error."""
        if names is None:
            return self
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise StylelensError(f"{self.source} has no score {unknown[0]!r}: choose from {', '.join(self.names)}")
        index = [self.names.index(name) for name in names]
        return SeedScores(self.seeds, list(names), self.values[:, index], self.source)


def read_scores_csv(path: str | Path) -> SeedScores:
    """A CSV of `seed,score[,score2...]` rows, with or without a header naming the scores; every seed once, every
    score a finite number. Any problem is a one-line error naming the line."""
    source = Path(path)
    if not source.is_file():
        raise StylelensError(f"scores file '{source}' not found: pass a CSV of seed,score[,score2...] rows")
    try:
        rows = [row for row in csv.reader(source.read_text(encoding='utf-8').splitlines()) if any(c.strip()
                                                                                                   for c in row)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise StylelensError(f"cannot read scores file '{source}': {err}; expected a CSV of seed,score rows") from None
    header = rows[0] if rows and not rows[0][0].strip().isdigit() else None
    body = rows[1:] if header else rows
    width = len(header) if header else (len(body[0]) if body else 0)
    if width < 2 or len(body) < 2:
        raise StylelensError(f"scores file '{source}' needs a seed column, at least one score column and two rows "
                             f'(got {len(body)} rows of {width} columns)')
    names = [name.strip() for name in header[1:]] if header else ['score'] + [f'score{k}' for k in range(2, width)]
    seeds, values = [], []
    for line, row in enumerate(body, start=2 if header else 1):
        seeds.append(_seed(row, width, line, source))
        values.append([_number(cell, line, source) for cell in row[1:]])
    seeds_array = np.asarray(seeds, dtype=np.int64)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise StylelensError(f"scores file '{source}' lists seed {repeated[0]} more than once: give each seed once")
    return SeedScores(seeds_array, names, np.asarray(values, dtype=np.float64), str(source))


def _seed(row: list[str], width: int, line: int, source: Path) -> int:
    """The row's seed, after checking its column count."""
    if len(row) != width:
        raise StylelensError(f"scores file '{source}' line {line} has {len(row)} columns, expected {width}")
    text = row[0].strip()
    if not text.isdigit() or int(text) > MAX_SEED:
        raise StylelensError(f"scores file '{source}' line {line}: seed {text!r} is not an integer in 0..{MAX_SEED}")
    return int(text)


def _number(cell: str, line: int, source: Path) -> float:
    """A finite float, or a one-line error naming the line."""
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise StylelensError(f"scores file '{source}' line {line}: {cell.strip()!r} is not a finite number")
    return value


def score_images(scorer: Scorer, ws: torch.Tensor, G: torch.nn.Module, *, batch_size: int = 32,
                 noise_mode: str = 'const', label: str = 'scoring') -> np.ndarray:
    """Scores [N, K] of the images of ws [N, num_ws, w_dim], rendered and scored `batch_size` at a time; under
    torchrun each rank renders the batches `shard` deals it and every rank gets all the scores, in order."""
    parts = []
    with torch.no_grad(), distributed.progress(len(ws), label) as advance:
        for start in distributed.shard(range(0, len(ws), batch_size)):
            images = G.synthesis(ws[start:start + batch_size], noise_mode=noise_mode).float()
            parts.append(scorer.score(images).double().cpu().numpy())
            advance(len(images))
    return np.concatenate(distributed.gather_shards(parts))
