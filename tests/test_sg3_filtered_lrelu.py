"""StyleGAN3's filtered leaky ReLU takes two routes to the same upsampling: a strided transposed depthwise
convolution (float32) and, on CPUs for other dtypes, zeros inserted into a padded buffer and a plain depthwise
convolution (bf16 has no fast transposed kernel). Both must compute the official definition; float64 inputs take
the second route, so comparing them with float32 checks it exactly, and a bf16 forward stays near float32."""
from __future__ import annotations

import pytest
import torch

from stylelens.loading.network import load_generator
from stylelens.vendor.stylegan3.ops import filtered_lrelu


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
