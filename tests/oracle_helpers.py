"""Helpers of the oracle parity tests: loading a fixture, comparing with it, and the mapping checks they share.

Tolerance: float32 atol 1e-4; uint8 images within 1 level (the official conversion truncates).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import stylelens

ATOL = 1e-4


def load_case(oracle_dir: Path, fixture: str, pickle_name: str | None = None) -> tuple[dict, dict, dict]:
    """(networks, reference arrays, fixture JSON) of one oracle fixture; the pickle defaults to `fixture`.pkl."""
    nets = stylelens.load_network(oracle_dir / (pickle_name or f'{fixture}.pkl'))
    ref = dict(np.load(oracle_dir / f'{fixture}.ref.npz'))
    meta = json.loads((oracle_dir / f'{fixture}.json').read_text())
    return nets, ref, meta


def close(actual: torch.Tensor, expected: np.ndarray, atol: float = ATOL) -> None:
    """Assert `actual` has `expected`'s shape and values within `atol`."""
    actual = actual.detach().cpu().numpy()
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)


def capture(module: torch.nn.Module, names: list[str], run: Callable[[], object]) -> dict[str, object]:
    """Outputs of the named sub-modules during `run()`, cloned as they are produced."""
    found, handles = {}, []
    for name in names:
        def hook(_mod, _inp, out, name=name):
            found[name] = tuple(o.clone() if o is not None else None for o in out) if isinstance(out, tuple) \
                else out.clone()
        handles.append(module.get_submodule(name).register_forward_hook(hook))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return found


def check_mapping(G: torch.nn.Module, ref: dict) -> None:
    """w_avg, and the ws of z and c at psi 1, psi 0.7 and psi 0.7 cut off after 4 ws."""
    z, c = torch.from_numpy(ref['z']), torch.from_numpy(ref['c'])
    close(G.mapping.w_avg, ref['w_avg'])
    close(G.mapping(z, c), ref['ws_psi1'])
    close(G.mapping(z, c, truncation_psi=0.7), ref['ws_psi07'])
    close(G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=4), ref['ws_psi07_cut4'])


def check_mapping_layers(G: torch.nn.Module, ref: dict) -> None:
    """Every `map.` array: the output of that mapping layer for seed 0 at batch 1."""
    names = [k[len('map.'):] for k in ref if k.startswith('map.')]
    z, c = torch.from_numpy(ref['z'][:1]), torch.from_numpy(ref['c'][:1])
    found = capture(G.mapping, names, lambda: G.mapping(z, c))
    for name in names:
        close(found[name], ref[f'map.{name}'])
