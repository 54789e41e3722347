"""How the page draws one hook point's activations: a channel (or the mean |x| over channels) as a colour map under a
chosen normalisation, or its power spectrum (the FFT view used to look for aliasing), with the numbers shown."""
from __future__ import annotations

from typing import Any

import numpy as np

from stylelens.errors import StylelensError
from stylelens.serve.state import MEAN_CHANNEL
from stylelens.viz import DIVERGING

SEQUENTIAL = 'magma'
SPECTRUM_FLOOR_DB = -80.0     # the spectrum view shows the top 80 dB below its peak


def activation_planes(value: Any) -> np.ndarray:
    """A recorded output of the first sample as float32 planes [C, H, W]: a feature map as it is, a block's x, a
    vector [N, D] (mapping layers, styles) as one 1 x D plane, ws [N, num_ws, w_dim] as one num_ws x w_dim plane."""
    tensor = value['x'] if isinstance(value, dict) else value
    array = tensor[0].detach().float().cpu().numpy() if hasattr(tensor, 'detach') else np.asarray(tensor[0])
    if array.ndim == 1:
        return array.reshape(1, 1, -1)
    if array.ndim == 2:
        return array[np.newaxis]
    return array.reshape(-1, *array.shape[-2:])


def power_spectrum(planes: np.ndarray) -> np.ndarray:
    """Mean power over planes [C, H, W] of the centred 2-D FFT (DC in the middle), each plane's mean removed, in dB
    relative to the peak."""
    centred = planes - planes.mean(axis=(-2, -1), keepdims=True)
    power = (np.abs(np.fft.fftshift(np.fft.fft2(centred), axes=(-2, -1))) ** 2).mean(axis=0)
    peak = power.max()
    return 10 * np.log10(np.maximum(power / peak, 1e-30)) if peak > 0 else np.full_like(power, SPECTRUM_FLOOR_DB)


def activation_view(planes: np.ndarray, channel: int, norm: str, view: str) -> tuple[np.ndarray, dict[str, Any]]:
    """RGB uint8 [H, W, 3] of one channel (MEAN_CHANNEL: mean |x| over channels) or its spectrum, and its numbers.

    Norms: `layer` scales by the min and max of the whole layer (channels comparable), `channel` by the shown map's
    own, `symmetric` centres a diverging map on 0 at the layer's largest |x| (the mean |x| map counts as its own
    layer). The spectrum is always shown in dB below its peak.
    """
    count = planes.shape[0]
    if channel != MEAN_CHANNEL and not 0 <= channel < count:
        raise StylelensError(f'channel {channel} does not exist: this activation has {count} channels '
                             f'(0..{count - 1}, or {MEAN_CHANNEL} for the mean |x|)')
    shown = np.abs(planes).mean(axis=0) if channel == MEAN_CHANNEL else planes[channel]
    layer = shown if channel == MEAN_CHANNEL else planes  # the mean |x| map is its own layer
    stats = dict(shape=list(planes.shape), channels=count, min=float(shown.min()), max=float(shown.max()),
                 mean=float(shown.mean()), std=float(shown.std()))
    if view == 'spectrum':
        selected = planes if channel == MEAN_CHANNEL else planes[channel:channel + 1]
        note = f'spectrum: dB below its peak ({SPECTRUM_FLOOR_DB:g} dB black), DC at the centre, mean removed'
        return _colour(power_spectrum(selected), SPECTRUM_FLOOR_DB, 0.0, SEQUENTIAL), dict(stats, note=note)
    if norm == 'symmetric':
        limit = float(np.abs(layer).max()) or 1.0
        return _colour(shown, -limit, limit, DIVERGING), stats
    source = layer if norm == 'layer' else shown
    return _colour(shown, float(source.min()), float(source.max()), SEQUENTIAL), stats


def _colour(values: np.ndarray, low: float, high: float, cmap: str) -> np.ndarray:
    """Values mapped linearly from [low, high] onto a matplotlib colour map, as RGB uint8."""
    from matplotlib import colormaps

    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return (colormaps[cmap](np.clip(scaled, 0, 1))[..., :3] * 255 + 0.5).astype(np.uint8)
