"""StyleGAN3 building blocks: filter design against SciPy (when installed), the fast filtered leaky ReLU and
modulated convolution against plain step-by-step references of their definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylelens.loading.network import load_generator
from stylelens.vendor.stylegan3 import filters
from stylelens.vendor.stylegan3.ops import filtered_lrelu, modulated_conv2d

FILTER_CASES = [(12, 2.0, 12.0, 32), (24, 2.378, 11.24, 64), (12, 16.0, 7.4, 64), (13, 3.0, 5.0, 20), (8, 90.5, 60, 512)]


@pytest.mark.parametrize('numtaps,cutoff,width,fs', FILTER_CASES)
def test_kaiser_lowpass_equals_scipy_firwin(numtaps, cutoff, width, fs):
    signal = pytest.importorskip('scipy.signal', reason='SciPy (not a dependency) is the cross-check')
    expected = signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
    np.testing.assert_allclose(filters.kaiser_lowpass(numtaps, cutoff, width, fs), expected, rtol=0, atol=1e-15)
    assert filters.kaiser_beta(filters.kaiser_attenuation(numtaps, width / (fs / 2))) == pytest.approx(
        signal.kaiser_beta(signal.kaiser_atten(numtaps, width / (fs / 2))), rel=1e-14)


def test_bessel_j1_equals_scipy():
    special = pytest.importorskip('scipy.special', reason='SciPy (not a dependency) is the cross-check')
    x = np.linspace(-60, 60, 2001)
    np.testing.assert_allclose(filters.bessel_j1(x), special.j1(x), rtol=0, atol=1e-14)


@pytest.mark.parametrize('numtaps,cutoff,width,fs', FILTER_CASES[:3])
def test_radial_lowpass_is_the_windowed_jinc(numtaps, cutoff, width, fs):
    special = pytest.importorskip('scipy.special', reason='SciPy (not a dependency) is the cross-check')
    signal = pytest.importorskip('scipy.signal')
    coords = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    radius = np.hypot(*np.meshgrid(coords, coords))
    window = np.kaiser(numtaps, signal.kaiser_beta(signal.kaiser_atten(numtaps, width / (fs / 2))))
    expected = special.j1(2 * cutoff * np.pi * radius) / (np.pi * radius) * np.outer(window, window)
    np.testing.assert_allclose(filters.radial_lowpass(numtaps, cutoff, width, fs), expected / expected.sum(),
                               rtol=0, atol=1e-15)


def test_design_lowpass_filter_shapes():
    assert filters.design_lowpass_filter(1, 2, 4, 16) is None
    assert filters.design_lowpass_filter(12, 2, 12, 32).shape == (12,)
    radial = filters.design_lowpass_filter(12, 2, 12, 32, radial=True)
    assert radial.shape == (12, 12) and radial.dtype == torch.float32
    assert float(radial.sum()) == pytest.approx(1, abs=1e-6)
    odd = filters.design_lowpass_filter(7, 2, 6, 16, radial=True)  # a centre tap: the jinc's limit, not NaN
    assert torch.isfinite(odd).all()
    with torch.device('meta'):
        assert filters.design_lowpass_filter(24, 4, 8, 64).shape == (24,)


def reference_upfirdn(x, f, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0):
    """upfirdn2d spelled out: zero insertion, pad or crop, true convolution with f * gain, keep every down-th."""
    f = torch.ones(1, 1) if f is None else f
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x0, x1, y0, y1 = padding
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    f = (f * gain ** (f.ndim / 2)).flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None].repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


def reference_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp):
    x = reference_upfirdn(x + b.reshape(1, -1, 1, 1), fu, up=up, padding=padding, gain=up ** 2)
    x = F.leaky_relu(x, slope) * gain
    return reference_upfirdn(x.clamp(-clamp, clamp) if clamp is not None else x, fd, down=down)


# (input size, up, down, up taps, down taps, padding, radial down filter): the layer kinds of T and R networks
# (same rate, rate doubling, the cropping last layers), odd paddings, and ToRGB's identity filters.
FLRELU_CASES = [(38, 2, 2, 12, 12, (9, 8, 9, 8), False), (38, 4, 2, 24, 12, (-6, -9, -6, -9), False),
                (38, 2, 2, 12, 12, (11, 10, 11, 10), True), (86, 2, 2, 12, 12, (-11, -12, -11, -12), True),
                (20, 2, 2, 12, 12, (3, 14, -2, 5), True), (20, 3, 1, 9, 1, (0, -3, 4, 1), False),
                (9, 1, 1, 1, 1, (0, 0, 0, 0), False)]


@pytest.mark.parametrize('size,up,down,up_taps,down_taps,padding,radial', FLRELU_CASES)
@pytest.mark.parametrize('channels_last', [False, True])
def test_filtered_lrelu_matches_its_definition(size, up, down, up_taps, down_taps, padding, radial, channels_last):
    gen = torch.Generator().manual_seed(size + up)
    x = torch.randn(2, 5, size, size, generator=gen) * 3
    fu = torch.rand(up_taps, generator=gen) if up_taps > 1 else None
    fd = (torch.rand(down_taps, down_taps, generator=gen) if radial else torch.rand(down_taps, generator=gen)) \
        if down_taps > 1 else None
    b = torch.randn(5, generator=gen)
    gain, slope = (1.0, 1.0) if up == 1 else (2 ** 0.5, 0.2)
    expected = reference_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, 4.0)
    x_in = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    original = x_in.clone()
    actual = filtered_lrelu(x_in, fu, fd, b, up, down, padding, gain, slope, 4.0)
    assert actual.shape == expected.shape
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5 * scale)  # rounding before the clamp
    assert torch.equal(x_in, original)


@pytest.mark.parametrize('demodulate', [True, False])
@pytest.mark.parametrize('batch', [1, 3])
def test_modulated_conv_equals_per_sample_modulated_kernels(demodulate, batch):
    """A batch scales inputs and outputs around one convolution, a single sample modulates the kernel: both are
    the official per-sample modulated (and demodulated) kernels."""
    gen = torch.Generator().manual_seed(7)
    x, weight = torch.randn(batch, 6, 10, 10, generator=gen), torch.randn(4, 6, 3, 3, generator=gen)
    styles, gain, bias = torch.randn(batch, 6, generator=gen), torch.tensor(0.7), torch.randn(4, generator=gen)
    w, s = weight, styles
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    kernels = w.unsqueeze(0) * s[:, None, :, None, None]
    if demodulate:
        kernels = kernels * (kernels.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    kernels = kernels * gain
    expected = torch.cat([F.conv2d(x[i:i + 1], kernels[i], padding=2) for i in range(batch)]) + bias.reshape(1, -1, 1, 1)
    actual = modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=2, input_gain=gain, bias=bias)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)

# Two routes to the same upsampling: a strided transposed depthwise convolution (float32) and, on CPUs for other
# dtypes, zeros inserted into a padded buffer and a plain depthwise convolution (bf16 has no fast transposed kernel).
# float64 inputs take the second route, so comparing them with float32 checks it; a bf16 forward stays near float32.
@pytest.mark.parametrize('up, down, taps, padding, separable', [
    (2, 2, 12, (11, 10, 11, 10), True),
    (4, 2, 24, (21, 20, 21, 20), True),
    (1, 1, 6, (5, 5, 5, 5), True),
    (2, 1, 8, (3, -1, 4, 0), True),
    (2, 2, 6, (5, 4, 5, 4), False),
])
def test_both_upsampling_routes_compute_the_same_thing(up, down, taps, padding, separable):
    gen = torch.Generator().manual_seed(taps + up)
    x = torch.randn(2, 5, 13, 13, generator=gen).contiguous(memory_format=torch.channels_last)
    fu = torch.randn([taps] if separable else [taps, taps], generator=gen).abs()
    fd = torch.randn([taps] if separable else [taps, taps], generator=gen).abs()
    b = torch.randn(5, generator=gen)
    out32 = filtered_lrelu(x, fu, fd, b, up=up, down=down, padding=padding, clamp=2.0)
    out64 = filtered_lrelu(x.double(), fu.double(), fd.double(), b.double(), up=up, down=down, padding=padding,
                           clamp=2.0)
    assert out32.shape == out64.shape
    assert (out32.double() - out64).abs().max().item() < 1e-4 * max(1.0, out64.abs().max().item())


@pytest.mark.parametrize('name', ['sg3t_cond32', 'sg3r_32'])  # separable filters (T) and radial 2-D ones (R)
def test_a_bf16_forward_stays_near_float32(oracle_dir, name):
    G = load_generator(oracle_dir / f'{name}.pkl')
    c = torch.eye(G.c_dim)[:2] if G.c_dim else None
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), c)
    with torch.no_grad():
        ref = G.synthesis(ws, noise_mode='const')
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = G.synthesis(ws, noise_mode='const').float()
    # bf16 keeps 8 bits of mantissa: about 0.005 on average here, 0.04 at most (2.5 % of the range)
    assert (low - ref).abs().mean().item() < 0.015 and (low - ref).abs().max().item() < 0.12
