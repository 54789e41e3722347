"""Low-pass filter design for StyleGAN3 in numpy alone: Kaiser-windowed sinc (separable) and jinc (radial) filters.

The formulas are the textbook ones that SciPy's `firwin`, `kaiser_atten`, `kaiser_beta` and `special.j1` compute
(and that the official networks call), so a network built here has the same filters as one built officially;
pickled networks carry their filters as buffers anyway.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def kaiser_attenuation(numtaps: int, width: float) -> float:
    """Stop-band attenuation in dB that a Kaiser window of `numtaps` taps reaches for a transition `width`
    given as a fraction of the Nyquist rate (Kaiser's empirical formula)."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(attenuation: float) -> float:
    """The Kaiser window shape parameter that gives `attenuation` dB of stop-band attenuation."""
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    if attenuation > 21:
        return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    return 0.0


def kaiser_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """Windowed-sinc low-pass FIR (cutoff and transition width in the units of the sampling rate `fs`),
    normalised to unit DC gain; the same taps as ``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)``."""
    nyquist = fs / 2
    beta = kaiser_beta(kaiser_attenuation(numtaps, width / nyquist))
    offsets = np.arange(numtaps) - (numtaps - 1) / 2
    relative_cutoff = cutoff / nyquist
    taps = relative_cutoff * np.sinc(relative_cutoff * offsets) * np.kaiser(numtaps, beta)
    return taps / taps.sum()


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind of order 1, from Bessel's integral J1(x) = mean over one period of
    cos(t - x sin t); the trapezoid rule on a periodic analytic integrand converges to double precision."""
    x = np.asarray(x, dtype=np.float64)
    points = 64 + 2 * int(np.ceil(np.abs(x).max(initial=0.0)))
    t = np.arange(points) * (2 * np.pi / points)
    return np.cos(t - x[..., None] * np.sin(t)).mean(axis=-1)


def radial_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """Radially symmetric 2-D low-pass filter [numtaps, numtaps]: the ideal disc filter's jinc response times
    a separable Kaiser window, normalised to unit DC gain."""
    coords = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    radius = np.hypot(*np.meshgrid(coords, coords))
    safe = np.where(radius > 0, radius, 1.0)
    taps = np.where(radius > 0, bessel_j1(2 * cutoff * np.pi * safe) / (np.pi * safe), cutoff)
    window = np.kaiser(numtaps, kaiser_beta(kaiser_attenuation(numtaps, width / (fs / 2))))
    taps = taps * np.outer(window, window)
    return taps / taps.sum()


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> torch.Tensor | None:
    """A layer's up/down-sampling filter as float32: None for one tap (identity), else 1-D separable taps or,
    with `radial`, a 2-D radially symmetric filter."""
    if numtaps < 1:
        raise ValueError(f'a filter needs at least one tap (got {numtaps})')
    if numtaps == 1:
        return None
    taps = radial_lowpass if radial else kaiser_lowpass
    return torch.as_tensor(taps(numtaps, cutoff, width, fs), dtype=torch.float32)
