"""The files of a `stylelens train` run: `generator.pt` (G's weights and build options) and `checkpoints/last.pt`.

Both are written with `torch.save` as tensors and plain data only and read back with `torch.load(weights_only=True)`,
so a run shared by someone else can run no code here. G is rebuilt from the recorded model name and options.
"""
from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stylelens.errors import StylelensError
from stylelens.outputs import atomic_path
from stylelens.scratch.models import MODELS, build_models

RUN_GENERATOR = 'generator.pt'
RUN_CHECKPOINT = Path('checkpoints') / 'last.pt'
RUN_SNAPSHOT = 'network-snapshot.pkl'
GENERATOR_FORMAT = 'stylelens-scratch-generator'
GENERATOR_VERSION = 1
NETWORK_CHOICES = 'a snapshot .pkl, an http(s) URL, a registry name, or a `stylelens train` run folder'


def write_run_generator(path: Path, model: str, build_kwargs: dict[str, Any],
                        state_dict: dict[str, torch.Tensor]) -> Path:
    """Write `generator.pt` atomically: the weights (on the CPU) with the model name and build options."""
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    payload = dict(format=GENERATOR_FORMAT, version=GENERATOR_VERSION, model=model, build_kwargs=dict(build_kwargs),
                   state_dict=state)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def run_generator_path(path: str | os.PathLike) -> Path:
    """The `generator.pt` of a run folder (or the file itself); a one-line error if there is none."""
    path = Path(path).expanduser()
    file = path / RUN_GENERATOR if path.is_dir() else path
    if not file.is_file():
        raise StylelensError(f'{path} is not a stylelens train run (no {RUN_GENERATOR}, written after each epoch): '
                             f'a --network is {NETWORK_CHOICES}')
    return file


def load_run_generator(path: str | os.PathLike) -> nn.Module:
    """G of a `stylelens train` run (folder or its `generator.pt`), loaded with `weights_only=True` so the file can
    hold nothing but tensors and plain data; returned on the CPU in eval mode without gradients."""
    file = run_generator_path(path)
    payload = _read_generator(file)
    G = _rebuild_generator(payload, file)
    _load_weights(G, payload, file)
    return G.eval().requires_grad_(False)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A `last.pt` training checkpoint, read with `torch.load(weights_only=True)`: tensors and plain data only, so a
    checkpoint from elsewhere can run nothing; anything else is refused in one line."""
    if not path.is_file():
        raise StylelensError(f'no training checkpoint at {path} (start without --resume)')
    state = _load_plain(path, 'stylelens training checkpoint')
    if not isinstance(state, dict) or not isinstance(state.get('config'), dict) or 'G' not in state:
        raise StylelensError(f'{path} is a torch file but not a stylelens training checkpoint (written as '
                             f'RUN/{RUN_CHECKPOINT.as_posix()} by stylelens train)')
    return state


def _load_weights(G: nn.Module, payload: dict[str, Any], file: Path) -> None:
    """Put the file's tensors into the meta-device G: same names, shapes and dtypes, and nothing left unset."""
    expected = {k: v.dtype for k, v in G.state_dict().items()}
    state = payload['state_dict']
    wrong = [k for k, v in state.items() if not isinstance(v, torch.Tensor) or v.dtype != expected.get(k, v.dtype)]
    if wrong:
        raise StylelensError(f"{file}: entries of the wrong type in state_dict: {', '.join(map(str, wrong[:3]))}")
    try:
        G.load_state_dict(state, assign=True)
    except RuntimeError as error:
        raise StylelensError(f"{file}: the weights do not fit model {payload['model']!r}: "
                             f'{_one_line(error)}') from None
    if any(t.is_meta for t in [*G.parameters(), *G.buffers()]):
        raise StylelensError(f"{file}: model {payload['model']!r} has tensors that the file does not set")


def _one_line(error: BaseException) -> str:
    """An exception's message on one line, cut to 300 characters (or its type when it has none)."""
    return ' '.join(str(error).split())[:300] or type(error).__name__


def _refusal(error: BaseException) -> str:
    """Why torch's weights-only loader refused a file: the first sentence of its reason, without torch's
    boilerplate (which advises retrying with weights_only=False)."""
    boilerplate = ('Weights only load failed', 'Check the documentation')
    paragraphs = [' '.join(p.split()) for p in str(error).split('\n\n')]
    reasons = [p.removeprefix('WeightsUnpickler error: ') for p in paragraphs if p and not p.startswith(boilerplate)]
    return reasons[0].split('. ')[0].rstrip('.')[:200] if reasons else type(error).__name__


def _load_plain(file: Path, what: str) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain data only, so the file can run nothing; whatever that
    loader refuses is refused in one line naming `what` the file should have been."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return torch.load(file, map_location='cpu', weights_only=True)
    except Exception as error:  # whatever the weights-only unpickler rejects, and why, varies by torch version
        raise StylelensError(f'{file} is not a loadable {what} (torch.load with weights_only=True refused it: '
                             f'{_refusal(error)}); nothing in it was run') from None


def _read_generator(file: Path) -> dict[str, Any]:
    """The checked `generator.pt` dict; anything torch's weights-only loader refuses is refused in one line."""
    payload = _load_plain(file, 'stylelens train generator')
    if not isinstance(payload, dict) or payload.get('format') != GENERATOR_FORMAT:
        raise StylelensError(f'{file} is a torch file but not a stylelens train generator (format is not '
                             f'{GENERATOR_FORMAT!r}): a --network is {NETWORK_CHOICES}')
    if payload.get('version') != GENERATOR_VERSION:
        raise StylelensError(f"{file}: generator format version {payload.get('version')!r} is not supported "
                             f'(this stylelens reads version {GENERATOR_VERSION})')
    if payload.get('model') not in MODELS:
        raise StylelensError(f"{file}: unknown model {payload.get('model')!r} (known: {', '.join(MODELS)})")
    if not isinstance(payload.get('state_dict'), dict):
        raise StylelensError(f'{file}: no state_dict of weights in the generator file')
    return payload


def _rebuild_generator(payload: dict[str, Any], file: Path) -> nn.Module:
    """G built from the saved model name and options on the meta device: no memory (however big the options claim
    the model is) and no random numbers are spent on weights that the file replaces."""
    kwargs = payload.get('build_kwargs')
    allowed = set(inspect.signature(build_models).parameters) - {'model'}
    if not isinstance(kwargs, dict) or not set(kwargs) <= allowed:
        extra = sorted(set(kwargs) - allowed) if isinstance(kwargs, dict) else kwargs
        raise StylelensError(f"{file}: bad build_kwargs {extra!r} (allowed: {', '.join(sorted(allowed))})")
    try:
        with torch.device('meta'):
            G, _ = build_models(payload['model'], **kwargs)
    except (TypeError, ValueError) as error:
        raise StylelensError(f"{file}: cannot rebuild model {payload['model']!r} from its build_kwargs: "
                             f'{_one_line(error)}') from None
    return G
