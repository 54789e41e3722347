"""The vocabularies users choose from (device, precision, noise mode), defined once and checked in one way."""
from __future__ import annotations

from collections.abc import Iterable

from stylelens.errors import StylelensError

DEVICE_CHOICES = ('auto', 'cpu', 'cuda', 'mps')
PRECISION_CHOICES = ('fp32', 'bf16')
TRAIN_PRECISION_CHOICES = ('auto', 'fp32', 'bf16', 'fp16')
CLASSIFIER_PRECISION_CHOICES = ('auto', 'fp32', 'bf16')
NOISE_MODES = ('const', 'random', 'none')


def check_choice(value: str, choices: Iterable[str], what: str) -> str:
    """`value` if it is one of `choices`, else the one-line error that names the valid ones."""
    choices = tuple(choices)
    if value not in choices:
        raise StylelensError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")
    return value
