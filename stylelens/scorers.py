"""Named, differentiable scores of images from a network given as a file: a `stylelens classifier train` classifier
(one column per class: its logits) or the shapes factor regressor (one column per factor component).

Files are read with `torch.load(weights_only=True)` and their tensors copied into our own modules; a file that
would need code to load (a pickled torch module, any class that is not plain data) is refused in one line.
`factors` names the shipped factor regressor.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from stylelens.errors import StylelensError
from stylelens.factors.model import FORMAT as REGRESSOR_FORMAT
from stylelens.factors.model import FactorRegressor, load_regressor, regressor_from_state
from stylelens.scratch.classifier import CHECKPOINT_FORMAT as CLASSIFIER_FORMAT
from stylelens.scratch.classifier import load_classifier

SHIPPED_NAME = 'factors'


@dataclass
class Scorer:
    """Scores [N, len(names)] of images [N, C, H, W] in [-1, 1], with autograd; `regressor` is set for the factor
    regressor, whose factors also have vector features (see FactorRegressor.read)."""

    source: str
    names: list[str]
    score: Callable[[torch.Tensor], torch.Tensor]
    regressor: FactorRegressor | None = None

    def column(self, name: str) -> int:
        """The index of a column by name (or by index, for classifiers whose classes have no names)."""
        if name in self.names:
            return self.names.index(name)
        if name.isdigit() and int(name) < len(self.names):
            return int(name)
        raise StylelensError(f"{self.source} has no score {name!r}: choose one of {', '.join(self.names)}")


def load_scorer(spec: str, device: torch.device | str = 'cpu') -> Scorer:
    """`factors` (the shipped factor regressor) or a path to a classifier / factor regressor file."""
    if spec == SHIPPED_NAME:
        return _regressor_scorer(load_regressor(), SHIPPED_NAME, device)
    path = Path(spec)
    if not path.is_file():
        raise StylelensError(f"scorer file '{spec}' not found: pass a `stylelens classifier train` classifier.pt, a "
                             f"factor regressor file, or '{SHIPPED_NAME}' for the shipped factor regressor")
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises many types for foreign, damaged or code-carrying files
        raise StylelensError(f"refusing '{spec}': it does not load weights-only ({str(err).splitlines()[0][:120]}); "
                             f'only tensors and plain data are read, so pickled modules are not accepted') from None
    kind = state.get('format') if isinstance(state, dict) else None
    if kind == REGRESSOR_FORMAT:
        return _regressor_scorer(regressor_from_state(state, spec), spec, device)
    if kind == CLASSIFIER_FORMAT:
        classifier = load_classifier(path, device)
        return Scorer(spec, list(classifier.class_names),
                      lambda images: classifier.net.classify(classifier.prepare(images))[0].float())
    raise StylelensError(f"'{spec}' is neither a stylelens classifier nor a factor regressor: train one with "
                         f'`stylelens classifier train` or `python -m stylelens.factors.train`')


def _regressor_scorer(regressor: FactorRegressor, source: str, device: torch.device | str) -> Scorer:
    """The factor regressor as a Scorer over its named columns."""
    regressor.net.to(device)
    names = list(regressor.read(torch.zeros(1, 3, 32, 32, device=device)).columns())
    return Scorer(source, names, lambda images: torch.stack(list(regressor.read(images.to(device)).columns()
                                                                  .values()), dim=1), regressor)
