"""Build the embedded demo network: a small StyleGAN2 with fixed-seed random weights (not trained).

It stands in until a trained demo exists, so every command runs offline from a fresh clone. Rebuild it with
`python -m stylelens.demo_network checkpoints/demo.pkl`; the same seed gives the same tensors.
"""
from __future__ import annotations

import sys

import torch

from stylelens.loading.official_writer import dump_snapshot
from stylelens.vendor.stylegan2_ada.networks import Discriminator, Generator

DEMO_SEED = 20261123
G_KWARGS = dict(z_dim=128, w_dim=128, c_dim=0, img_resolution=64, img_channels=3,
                mapping_kwargs=dict(num_layers=4),
                synthesis_kwargs=dict(channel_base=4096, channel_max=64, num_fp16_res=0, conv_clamp=256))
D_KWARGS = dict(c_dim=0, img_resolution=64, img_channels=3, channel_base=4096, channel_max=64, conv_clamp=256,
                epilogue_kwargs=dict(mbstd_group_size=4))


def random_networks(G_kwargs: dict, D_kwargs: dict, seed: int, w_avg_samples: int = 4096) -> tuple:
    """G and D with seeded random weights, tuned so images are not flat: small noise strengths, toned-down toRGB
    weights, and a real w_avg (the mean of mapped samples) so truncation does something."""
    torch.manual_seed(seed)
    G = Generator(**G_kwargs)
    D = Discriminator(**D_kwargs)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith('noise_strength'):
                param.copy_(0.05 * torch.randn([]).abs())
            elif name.endswith('torgb.weight'):
                param.mul_(0.3)
        G.mapping.w_avg.copy_(G.mapping(torch.randn([w_avg_samples, G.z_dim]), None)[:, 0].mean(dim=0))
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False)


def build_demo_snapshot(seed: int = DEMO_SEED) -> dict:
    """G, D, G_ema (= G) with random weights, in the snapshot layout."""
    G, D = random_networks(G_KWARGS, D_KWARGS, seed)
    return dict(G=G, D=D, G_ema=G, augment_pipe=None,
                training_set_kwargs=dict(class_name=None, resolution=64, use_labels=False,
                                         note='random weights, not trained'))


if __name__ == '__main__':
    dump_snapshot(build_demo_snapshot(), sys.argv[1] if len(sys.argv) > 1 else 'checkpoints/demo.pkl')
