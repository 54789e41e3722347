"""How close a projection came, on the uint8 images written to disk: PSNR and SSIM (Wang et al. 2004)."""
from __future__ import annotations

import math

import numpy as np

SSIM_WINDOW = 11    # Gaussian window of the SSIM paper: 11x11, sigma 1.5
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images of one shape (inf when they are identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(DATA_RANGE ** 2 / mse)


def _gaussian(size: int, sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian of `size` taps."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of [H, W] by the outer product of `kernel` with itself."""
    rows = np.apply_along_axis(np.convolve, 0, image, kernel, mode='valid')
    return np.apply_along_axis(np.convolve, 1, rows, kernel, mode='valid')


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two uint8 images [H, W] or [H, W, C]: the Gaussian-windowed SSIM map of the
    paper (11x11, sigma 1.5, K1 0.01, K2 0.03, L 255) over positions where the window fits, averaged over channels;
    images smaller than the window use one as large as fits."""
    a3 = a.reshape(a.shape[0], a.shape[1], -1).astype(np.float64)
    b3 = b.reshape(b.shape[0], b.shape[1], -1).astype(np.float64)
    size = min(SSIM_WINDOW, a3.shape[0], a3.shape[1])
    kernel = _gaussian(size, SSIM_SIGMA)
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    scores = []
    for channel in range(a3.shape[2]):
        x, y = a3[:, :, channel], b3[:, :, channel]
        mx, my = _filter_valid(x, kernel), _filter_valid(y, kernel)
        vx = _filter_valid(x * x, kernel) - mx * mx
        vy = _filter_valid(y * y, kernel) - my * my
        cov = _filter_valid(x * y, kernel) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(float(ssim_map.mean()))
    return float(np.mean(scores))
