"""SeFa, closed-form factorization of latent semantics (Shen & Zhou 2021): directions from the generator's weights.

A change Δw of w changes the styles of the chosen layers by A Δw, where A stacks their style affine weights
[channels, w_dim]. The unit Δw that change the styles most are the right singular vectors of A, strongest first
(what rosinality's closed_form_factorization.py computes with the modulation weights of every convolution).
`normalize` scales every row of A (one style channel) to unit norm first, as the SeFa authors' code does, so wide
layers and strong channels do not dominate. No image is generated: it takes milliseconds even at 1024².
"""
from __future__ import annotations

import numpy as np
import torch

from stylelens.directions.format import DirectionSet, make_set
from stylelens.directions.pca import sign_convention
from stylelens.mixing import parse_layers
from stylelens.stylespace import affine_matrix, select_layers


def sefa(G: torch.nn.Module, layers: str | None = None, *, num: int | None = None, normalize: bool = False,
         torgb: bool = False, network_sha256: str | None = None) -> DirectionSet:
    """The `num` strongest SeFa directions (default all, at most w_dim) of the layers that read the ws chosen by
    `layers` (spec as in `mix`; default all), convolution layers only unless `torgb`; they move those ws (all ws
    by default, as rosinality's apply_factor.py moves the whole latent)."""
    chosen = select_layers(G, layers, torgb=torgb)
    matrix = affine_matrix(G, chosen)
    if normalize:
        matrix = matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)
    singular, vectors = _right_singular(matrix)
    count = len(singular) if num is None else min(num, len(singular))
    mask = np.zeros((count, G.num_ws), bool)
    mask[:, list(range(G.num_ws)) if layers is None else parse_layers(G, layers)] = True
    options = dict(layers=layers, normalize=normalize, torgb=torgb, num=num,
                   affine_layers=[layer.short for layer in chosen])
    return make_set(vectors[:count], mask, method='sefa', options=options, scores=singular[:count],
                    score_name='singular value', labels=[f'sefa:{k}' for k in range(count)],
                    network_sha256=network_sha256)


def _right_singular(matrix: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(singular values, right singular vectors as rows), strongest first, signs fixed: from the eigenvectors of
    the small Gram matrix AᵀA [w_dim, w_dim] in float64 rather than an SVD of the tall A. On one thread: a
    512 x 512 eigendecomposition gains nothing from more, and on a busy CPU a threaded one stalls (measured by
    `python -m stylelens.bench.directions`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        eigenvalues, eigenvectors = torch.linalg.eigh(matrix.T @ matrix)
    finally:
        torch.set_num_threads(threads)
    order = torch.argsort(eigenvalues, descending=True)
    singular = eigenvalues[order].clamp_min(0).sqrt().numpy()
    return singular, sign_convention(eigenvectors[:, order].T.numpy())
