"""The StyleGAN2 operators against reference computations written from their definitions, in float64.

References (all in this file):
- `ref_upfirdn2d`: explicit zero insertion, zero padding / cropping, a per-pixel *true* convolution, then keeping
  every `down`-th pixel.
- `ref_conv2d_resample`: the order-independent definition of a resampling convolution: filtered zero-insertion
  upsampling (gain up²), the convolution, then filtering and downsampling.
- `ref_modulated_conv2d`: the "fused" formulation: per-sample modulated (and demodulated) kernels run as one grouped
  convolution, to compare with the shared-weight path that the networks use.
Filters are deliberately non-symmetric, so a wrong flip convention shows up.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stylelens.vendor.stylegan2_ada.ops import (
    bias_act,
    conv2d_resample,
    downsample2d,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

ATOL = 1e-5


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def non_symmetric_filter_2d() -> torch.Tensor:
    """A 4x4 filter with no symmetry at all (every entry different), normalised to sum 1."""
    f = torch.arange(1, 17, dtype=torch.float64).reshape(4, 4) ** 1.3 + torch.tensor([0.5, 0.0, 2.0, 1.0])
    return f / f.sum()


def odd_filter_2d() -> torch.Tensor:
    """A non-symmetric 5x5 filter: odd sizes make the before/after centring pads differ."""
    f = torch.outer(torch.tensor([1., 2, 5, 3, 1]), torch.tensor([2., 1, 4, 4, 1])).to(torch.float64)
    f[0, 4] += 3
    return f / f.sum()


def non_symmetric_taps(n: int = 8) -> torch.Tensor:
    """A 1-D filter of n taps, not symmetric, normalised to sum 1."""
    f = torch.linspace(0.2, 1.0, n, dtype=torch.float64) ** 2 + 0.1 * torch.arange(n, dtype=torch.float64) % 3
    return f / f.sum()


def ref_upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
                  padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1,
                  flip_filter: bool = False) -> torch.Tensor:
    """Naive definition. padding = (x0, x1, y0, y1), negative values crop. A 1-D f means the separable filter
    f(y) * f(x). flip_filter=False: true convolution with f; True: correlation with f."""
    x = x.to(torch.float64)
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float64)
    f = f.to(torch.float64)
    if f.ndim == 1:
        f = torch.outer(f, f)
    n, c, h, w = x.shape
    # 1. Zero insertion: input pixel (i, j) goes to (i * up, j * up); all other pixels are 0.
    upsampled = torch.zeros(n, c, h * up, w * up, dtype=torch.float64)
    upsampled[:, :, ::up, ::up] = x
    # 2. Pad with zeros or crop, on each side separately.
    x0, x1, y0, y1 = padding
    H, W = upsampled.shape[2:]
    padded = torch.zeros(n, c, H + y0 + y1, W + x0 + x1, dtype=torch.float64)
    for i in range(padded.shape[2]):
        for j in range(padded.shape[3]):
            si, sj = i - y0, j - x0
            if 0 <= si < H and 0 <= sj < W:
                padded[:, :, i, j] = upsampled[:, :, si, sj]
    # 3. Valid true convolution: out[i, j] = sum_ab f[a, b] * padded[i + fh - 1 - a, j + fw - 1 - b].
    #    (Correlation instead when flip_filter: out[i, j] = sum_ab f[a, b] * padded[i + a, j + b].)
    #    Computed tap by tap: tap (a, b) adds f[a, b] times the padded image shifted by (fh - 1 - a, fw - 1 - b).
    fh, fw = f.shape
    oh, ow = padded.shape[2] - fh + 1, padded.shape[3] - fw + 1
    out = torch.zeros(n, c, oh, ow, dtype=torch.float64)
    for a in range(fh):
        for b in range(fw):
            di, dj = (a, b) if flip_filter else (fh - 1 - a, fw - 1 - b)
            out += f[a, b] * padded[:, :, di:di + oh, dj:dj + ow]
    # 4. Keep every down-th pixel, starting at 0.
    return out[:, :, ::down, ::down] * gain


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    torch.testing.assert_close(actual.to(torch.float64), expected.to(torch.float64), rtol=0, atol=atol)


# ------------------------------------------------------------------------------------------------ setup_filter

def test_setup_filter_short_1d_becomes_normalised_outer_product():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    close(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    assert f.sum().item() == pytest.approx(1.0)


def test_setup_filter_long_1d_stays_separable_and_normalised():
    taps = non_symmetric_taps(8)
    f = setup_filter((taps * 7).tolist())
    assert f.shape == (8,)
    close(f, taps)
    assert setup_filter(taps.tolist(), separable=False).shape == (8, 8)
    assert setup_filter([1, 2, 3], separable=True).shape == (3,)


def test_setup_filter_options():
    raw = [1.0, 2.0, 4.0, 1.0]
    close(setup_filter(raw, normalize=False), torch.outer(torch.tensor(raw), torch.tensor(raw)))
    close(setup_filter(raw, flip_filter=True), setup_filter(raw).flip([0, 1]))
    close(setup_filter(raw, gain=4), setup_filter(raw) * 4)  # 2-D: the whole gain
    close(setup_filter(non_symmetric_taps(8).tolist(), gain=4), non_symmetric_taps(8) * 2)  # 1-D: sqrt per pass
    close(setup_filter(None), torch.ones(1, 1))
    close(setup_filter(non_symmetric_filter_2d()), non_symmetric_filter_2d())  # 2-D input kept, normalised


# ------------------------------------------------------------------------------------------------ upfirdn2d

def test_upfirdn2d_impulse_response_is_the_filter_not_its_flip():
    """A true convolution of a single impulse reproduces the filter itself; flip_filter=True gives the flip."""
    f = non_symmetric_filter_2d()
    impulse = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    full = (3, 3, 3, 3)  # pad filter_size - 1 on every side: the full convolution
    close(upfirdn2d(impulse, f, padding=full)[0, 0], f, atol=1e-12)
    close(upfirdn2d(impulse, f, padding=full, flip_filter=True)[0, 0], f.flip([0, 1]), atol=1e-12)
    # Separable: horizontal taps along x, the same taps along y.
    taps = non_symmetric_taps(8)
    close(upfirdn2d(impulse, taps, padding=7)[0, 0], torch.outer(taps, taps), atol=1e-12)


def test_reference_upfirdn2d_matches_an_independent_convolution():
    """Sanity check of the reference itself against torch's correlation with a flipped kernel."""
    x, f = rand(1, 2, 5, 6, seed=1), non_symmetric_filter_2d()
    expected = F.conv2d(F.pad(x, [1, 2, 3, 0]), f.flip([0, 1])[None, None].repeat(2, 1, 1, 1), groups=2)
    close(ref_upfirdn2d(x, f, padding=(1, 2, 3, 0)), expected, atol=1e-12)


UPFIRDN_CASES = [
    # up, down, padding (x0, x1, y0, y1)
    (1, 1, (0, 0, 0, 0)),
    (1, 1, (2, 1, 0, 3)),
    (2, 1, (2, 1, 1, 2)),
    (1, 2, (1, 2, 2, 1)),
    (2, 2, (1, 1, 2, 0)),
    (2, 1, (-1, 2, 1, -2)),  # negative padding crops
    (1, 2, (-2, 3, 0, -1)),
]


@pytest.mark.parametrize('flip_filter', [False, True])
@pytest.mark.parametrize('up,down,padding', UPFIRDN_CASES)
def test_upfirdn2d_2d_filter_matches_reference(up, down, padding, flip_filter):
    x, f = rand(2, 3, 7, 9, seed=2), non_symmetric_filter_2d()
    actual = upfirdn2d(x.float(), f.float(), up=up, down=down, padding=list(padding), flip_filter=flip_filter,
                       gain=1.7)
    close(actual, ref_upfirdn2d(x, f, up, down, padding, gain=1.7, flip_filter=flip_filter))


@pytest.mark.parametrize('up,down,padding', UPFIRDN_CASES)
def test_upfirdn2d_separable_filter_matches_reference(up, down, padding):
    x, taps = rand(1, 2, 12, 14, seed=3), non_symmetric_taps(9)
    actual = upfirdn2d(x.float(), taps.float(), up=up, down=down, padding=list(padding), gain=up * up)
    close(actual, ref_upfirdn2d(x, taps, up, down, padding, gain=up * up))


def test_upfirdn2d_padding_forms():
    x, f = rand(1, 1, 5, 5, seed=4).float(), non_symmetric_filter_2d().float()
    close(upfirdn2d(x, f, padding=2), upfirdn2d(x, f, padding=[2, 2, 2, 2]))
    close(upfirdn2d(x, f, padding=[1, 3]), upfirdn2d(x, f, padding=[1, 1, 3, 3]))
    close(upfirdn2d(x, None, padding=1), F.pad(x, [1, 1, 1, 1]))


# ------------------------------------------------------------------------------------------------ up/downsample2d

@pytest.mark.parametrize('f', [non_symmetric_filter_2d(), non_symmetric_taps(8), torch.ones(2, 2) / 4])
def test_upsample2d_and_downsample2d_sizes(f):
    x = rand(2, 3, 5, 7, seed=5).float()
    assert upsample2d(x, f.float()).shape == (2, 3, 10, 14)
    assert upsample2d(x, f.float(), up=4).shape == (2, 3, 20, 28)
    y = rand(2, 3, 8, 12, seed=6).float()
    assert downsample2d(y, f.float()).shape == (2, 3, 4, 6)
    assert downsample2d(y, f.float(), down=4).shape == (2, 3, 2, 3)


def test_upsample2d_and_downsample2d_are_centred_upfirdn():
    """Centring pads: (fw + up - 1) // 2 before and (fw - up) // 2 after for upsampling (gain up²);
    (fw - down + 1) // 2 before and (fw - down) // 2 after for downsampling."""
    x = rand(1, 2, 6, 7, seed=7)
    f4, f5 = non_symmetric_filter_2d(), odd_filter_2d()
    close(upsample2d(x.float(), f4.float()), ref_upfirdn2d(x, f4, up=2, padding=(2, 1, 2, 1), gain=4))
    close(upsample2d(x.float(), f5.float()), ref_upfirdn2d(x, f5, up=2, padding=(3, 1, 3, 1), gain=4))
    close(downsample2d(x.float(), f4.float()), ref_upfirdn2d(x, f4, down=2, padding=(1, 1, 1, 1)))
    close(downsample2d(x.float(), f5.float()), ref_upfirdn2d(x, f5, down=2, padding=(2, 1, 2, 1)))


def test_upsample2d_preserves_a_constant_image():
    """Zero insertion removes 3/4 of the energy; the gain up² restores the DC level away from the borders."""
    x = torch.full((1, 1, 6, 6), 0.75)
    y = upsample2d(x, setup_filter([1, 3, 3, 1]))
    close(y[:, :, 2:-2, 2:-2], torch.full((1, 1, 8, 8), 0.75))
    close(downsample2d(x, setup_filter([1, 3, 3, 1]))[:, :, 1:-1, 1:-1], torch.full((1, 1, 1, 1), 0.75))


# ------------------------------------------------------------------------------------------------ conv2d_resample

def ref_conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
                        padding: int = 0, groups: int = 1, flip_weight: bool = True) -> torch.Tensor:
    """Filtered upsampling -> convolution -> filtered downsampling, with `padding` relative to the upsampled image.

    The pads that centre the filter are (fw + up - 1)//2, (fw - up)//2 for upsampling and (fw - down + 1)//2,
    (fw - down)//2 for downsampling; all padding is applied before the convolution.
    flip_weight=True: torch's correlation with w; False: true convolution with w.
    """
    fw = f.shape[-1]
    before = after = padding
    if up > 1:
        before, after = before + (fw + up - 1) // 2, after + (fw - up) // 2
    if down > 1:
        before, after = before + (fw - down + 1) // 2, after + (fw - down) // 2
    x = ref_upfirdn2d(x, f if up > 1 else None, up=up, padding=(before, after, before, after), gain=up ** 2)
    w = w.to(torch.float64)
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = ref_upfirdn2d(x, f, down=down)
    return x


@pytest.mark.parametrize('f', [non_symmetric_filter_2d(), odd_filter_2d()], ids=['4x4', '5x5'])
@pytest.mark.parametrize('flip_weight', [True, False])
@pytest.mark.parametrize('up,down', [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize('kernel', [3, 1])
def test_conv2d_resample_matches_reference(kernel, up, down, flip_weight, f):
    x = rand(2, 4, 6, 6, seed=8)
    w = torch.randn(5, 4, kernel, kernel, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    w[..., 0, -1] += 1.0  # make 3x3 kernels visibly non-symmetric
    padding = kernel // 2
    actual = conv2d_resample(x.float(), w.float(), f=f.float(), up=up, down=down, padding=padding,
                             flip_weight=flip_weight)
    expected = ref_conv2d_resample(x, w, f, up=up, down=down, padding=padding, flip_weight=flip_weight)
    assert actual.shape == (2, 5, 6 * up // down, 6 * up // down)
    close(actual, expected)


@pytest.mark.parametrize('up,down', [(1, 1), (2, 1), (1, 2)])
def test_conv2d_resample_grouped(up, down):
    x, f = rand(1, 6, 5, 5, seed=10), non_symmetric_filter_2d()
    w = rand(4, 3, 3, 3, seed=11)  # 2 groups: 3 input and 2 output channels each
    actual = conv2d_resample(x.float(), w.float(), f=f.float(), up=up, down=down, padding=1, groups=2,
                             flip_weight=(up == 1))
    close(actual, ref_conv2d_resample(x, w, f, up=up, down=down, padding=1, groups=2, flip_weight=(up == 1)))


def test_conv2d_resample_up_and_down_together():
    x, f = rand(1, 2, 5, 5, seed=12), non_symmetric_filter_2d()
    w = rand(3, 2, 3, 3, seed=13)
    close(conv2d_resample(x.float(), w.float(), f=f.float(), up=2, down=2, padding=1),
          ref_conv2d_resample(x, w, f, up=2, down=2, padding=1))


# ------------------------------------------------------------------------------------------------ modulated_conv2d

def ref_modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None,
                         up: int, padding: int, f: torch.Tensor, demodulate: bool,
                         flip_weight: bool) -> torch.Tensor:
    """Fused formulation: w_n = weight * s_n (input channels), demodulated per output channel, one grouped conv."""
    n, i, h, w_ = x.shape
    o, _, k, _ = weight.shape
    kernels = weight[None].to(torch.float64) * styles.to(torch.float64)[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        kernels = kernels / (kernels.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).sqrt()
    y = ref_conv2d_resample(x.reshape(1, n * i, h, w_), kernels.reshape(n * o, i, k, k), f, up=up, padding=padding,
                            groups=n, flip_weight=flip_weight)
    y = y.reshape(n, o, *y.shape[2:])
    return y + noise.to(torch.float64) if noise is not None else y


@pytest.mark.parametrize('with_noise', [True, False])
@pytest.mark.parametrize('demodulate', [True, False])
@pytest.mark.parametrize('up', [1, 2])
def test_modulated_conv2d_equals_fused_grouped_formulation(up, demodulate, with_noise):
    x, f = rand(3, 4, 6, 6, seed=14), non_symmetric_filter_2d()
    weight = rand(5, 4, 3, 3, seed=15)
    styles = 1 + 0.5 * rand(3, 4, seed=16)  # different per sample and per input channel
    noise = 0.3 * rand(3, 1, 6 * up, 6 * up, seed=17) if with_noise else None
    actual = modulated_conv2d(x.float(), weight.float(), styles.float(), noise=None if noise is None else noise.float(),
                              up=up, padding=1, resample_filter=f.float(), demodulate=demodulate,
                              flip_weight=(up == 1))
    expected = ref_modulated_conv2d(x, weight, styles, noise, up, 1, f, demodulate, flip_weight=(up == 1))
    close(actual, expected)


def test_modulated_conv2d_1x1_without_demodulation_is_a_styled_linear_map():
    """The toRGB case: per-sample y[o] = sum_i W[o, i] * s[i] * x[i]."""
    x, weight, styles = rand(2, 4, 3, 3, seed=18), rand(3, 4, 1, 1, seed=19), rand(2, 4, seed=20)
    expected = torch.einsum('oi,ni,nihw->nohw', weight[:, :, 0, 0], styles, x)
    close(modulated_conv2d(x.float(), weight.float(), styles.float(), demodulate=False), expected)


def test_modulated_conv2d_const_noise_broadcasts_over_the_batch():
    x, weight, styles = rand(2, 3, 4, 4, seed=21).float(), rand(2, 3, 3, 3, seed=22).float(), rand(2, 3).float()
    noise = rand(4, 4, seed=23).float()
    base = modulated_conv2d(x, weight, styles, padding=1)
    close(modulated_conv2d(x, weight, styles, noise=noise, padding=1), base + noise)


# ------------------------------------------------------------------------------------------------ bias_act

def test_bias_act_linear():
    x, b = rand(2, 3, 4, 4, seed=24), rand(3, seed=25)
    expected = x + b[None, :, None, None]
    close(bias_act(x, b), expected, atol=1e-12)
    close(bias_act(x, b, gain=0.5), expected * 0.5, atol=1e-12)
    close(bias_act(x, b, clamp=0.3), (expected).clamp(-0.3, 0.3), atol=1e-12)
    close(bias_act(x), x, atol=0)


def test_bias_act_lrelu_default_gain_is_sqrt2():
    x, b = rand(2, 3, 4, 4, seed=26), rand(3, seed=27)
    y = x + b[None, :, None, None]
    lrelu = torch.where(y >= 0, y, 0.2 * y)
    close(bias_act(x, b, act='lrelu'), lrelu * math.sqrt(2), atol=1e-12)
    close(bias_act(x, b, act='lrelu', gain=3.0), lrelu * 3.0, atol=1e-12)
    # The clamp applies after the gain.
    close(bias_act(x, b, act='lrelu', gain=3.0, clamp=1.0), (lrelu * 3.0).clamp(-1, 1), atol=1e-12)
    assert bias_act(100 * x, b, act='lrelu', clamp=2.5).abs().max().item() == pytest.approx(2.5)


def test_bias_act_other_dim_and_negative_clamp():
    x, b = rand(4, 6, seed=28), rand(6, seed=29)
    close(bias_act(x, b, act='lrelu', dim=1), F.leaky_relu(x + b, 0.2) * math.sqrt(2), atol=1e-12)
    x3 = rand(6, 5, 2, seed=30)
    close(bias_act(x3, b, dim=0), x3 + b[:, None, None], atol=1e-12)
    close(bias_act(10 * x, b, clamp=-1), 10 * x + b, atol=1e-12)  # clamp < 0 means no clamping
