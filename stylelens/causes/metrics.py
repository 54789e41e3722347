"""What an intervention is measured by: a feature vector φ of each image, differentiable, and the scalars made
from it.

  region:x0,y0,x1,y1   the pixels (all colour channels) of a rectangle of the output image, in pixel coordinates
  pixels               every pixel
  classifier:FILE:C    score C (a class of a `stylelens classifier train` classifier, or a column of a factor
                       regressor file) of a network read weights-only
  factor:NAME          a factor of the shipped shapes factor regressor: kind (probabilities), x, y, size,
                       saturation, value, bg_value, or an angle (rotation, hue, bg_hue, light: its unit cos/sin);
                       single columns (circle, hue_cos, ...) too

Patching measures how far the patched image's φ has come from the corrupt run's towards the clean run's: the
projection ⟨φ(p) − φ(c), φ(clean) − φ(c)⟩ / ‖φ(clean) − φ(c)‖², 0 for the corrupt image and 1 for the clean one
(for a single score this is the usual normalised score difference). Attribution needs one number per image: the
score itself, φ's mean for regions and pixels (their brightness), or, with a baseline, the projection on the
baseline-to-input difference of φ (so attributions are fractions of that difference).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from stylelens.errors import StylelensError
from stylelens.factors.model import FACTORS
from stylelens.scorers import SHIPPED_NAME, load_scorer

METRIC_HINT = 'region:x0,y0,x1,y1, pixels, classifier:FILE:CLASS or factor:NAME'


@dataclass
class Metric:
    """φ of images [N, C, H, W] -> [N, D]; `mean_ok` when φ's mean is a meaningful scalar (pixels, regions)."""

    spec: str
    features: Callable[[torch.Tensor], torch.Tensor]
    mean_ok: bool = False
    region: tuple[int, int, int, int] | None = None

    def scalar(self, images: torch.Tensor, direction: torch.Tensor | None = None) -> torch.Tensor:
        """One number per image: ⟨φ, direction⟩ when given, else the single score or φ's mean."""
        phi = self.features(images)
        if direction is not None:
            return phi @ direction
        if phi.shape[1] == 1 or self.mean_ok:
            return phi.mean(dim=1)
        raise StylelensError(f'metric {self.spec} has {phi.shape[1]} values per image: pass a baseline, whose '
                             f'difference to the input gives the one number to attribute')


def parse_metric(spec: str, resolution: int, device: torch.device | str = 'cpu') -> Metric:
    """The metric of a spec (see the module docstring) for images of `resolution`; a bad spec is a one-line error."""
    kind, _, arg = spec.partition(':')
    if spec == 'pixels':
        return Metric(spec, lambda images: images.flatten(1), mean_ok=True)
    if kind == 'region':
        box = _region(arg, resolution, spec)
        x0, y0, x1, y1 = box
        return Metric(spec, lambda images: images[:, :, y0:y1, x0:x1].flatten(1), mean_ok=True, region=box)
    if kind == 'classifier' and ':' in arg:
        path, _, name = arg.rpartition(':')
        scorer = load_scorer(path, device)
        column = scorer.column(name)
        return Metric(spec, lambda images: scorer.score(images)[:, column:column + 1])
    if kind == 'factor' and arg:
        scorer = load_scorer(SHIPPED_NAME, device)
        if arg in FACTORS:
            return Metric(spec, lambda images: scorer.regressor.read(images).features(arg))
        column = scorer.column(arg)
        return Metric(spec, lambda images: scorer.score(images)[:, column:column + 1])
    raise StylelensError(f"unknown --metric '{spec}': expected {METRIC_HINT}")


def _region(text: str, resolution: int, spec: str) -> tuple[int, int, int, int]:
    """x0,y0,x1,y1 as pixel bounds inside the image, x0 < x1 and y0 < y1."""
    try:
        x0, y0, x1, y1 = (int(part) for part in text.split(','))
    except ValueError:
        raise StylelensError(f"bad region '{spec}': expected region:x0,y0,x1,y1 in pixels, e.g. region:0,0,"
                             f'{resolution // 2},{resolution // 2}') from None
    if not (0 <= x0 < x1 <= resolution and 0 <= y0 < y1 <= resolution):
        raise StylelensError(f"bad region '{spec}': need 0 <= x0 < x1 <= {resolution} and 0 <= y0 < y1 <= "
                             f'{resolution} for this {resolution}x{resolution} network')
    return x0, y0, x1, y1


def recovered(phi: torch.Tensor, clean: torch.Tensor, corrupt: torch.Tensor) -> torch.Tensor:
    """How far each row of φ [N, D] has moved from `corrupt` [1, D] to `clean` [1, D]: 0 at corrupt, 1 at clean."""
    gap = clean.double() - corrupt.double()
    norm = float(gap.square().sum())
    if norm == 0:
        raise StylelensError('the clean and the corrupt input give the same metric value: choose inputs that differ '
                             'in what the metric measures')
    return ((phi.double() - corrupt.double()) @ gap[0]) / norm
