"""The benchmark network: a paper256-scale StyleGAN2 (the official `paper256` configuration of train.py) with
fixed-seed random weights, written once as a G + D + G_ema snapshot so every timing goes through the real load path.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from stylelens.bench.timing import log, run_worker

NETWORK_SEED = 256
NETWORK_FILE = 'paper256.pkl'
G_KWARGS: dict[str, Any] = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=256, img_channels=3,
                                mapping_kwargs=dict(num_layers=8),
                                synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4,
                                                      conv_clamp=256))
D_KWARGS: dict[str, Any] = dict(c_dim=0, img_resolution=256, img_channels=3, channel_base=16384, channel_max=512,
                                num_fp16_res=4, conv_clamp=256, block_kwargs={}, mapping_kwargs={},
                                epilogue_kwargs=dict(mbstd_group_size=8))

# The same network built with NVIDIA's stylegan2-ada-pytorch classes (OFFICIAL=DIR); and, with the stylegan3
# repository's classes (STYLEGAN3=DIR), a StyleGAN3-T (train.py --cfg=stylegan3-t) kept small enough for NVIDIA's
# CPU reference ops to render its seeds in seconds: 128², channel_base 8192, channel_max 256 (7.9 M parameters).
OFFICIAL_NETWORK_FILE = 'paper256-official.pkl'
SG3_NETWORK_FILE = 'stylegan3-t-128-official.pkl'
SG3_G_KWARGS: dict[str, Any] = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=128, img_channels=3,
                                    mapping_kwargs=dict(num_layers=2), channel_base=8192, channel_max=256,
                                    magnitude_ema_beta=0.5 ** (32 / (20 * 1e3)))
SG3_D_KWARGS: dict[str, Any] = dict(D_KWARGS, img_resolution=128, channel_base=8192, channel_max=256)


def random_networks(G_kwargs: dict, D_kwargs: dict, seed: int, w_avg_samples: int = 4096) -> tuple:
    """G and D with seeded random weights, tuned so images are not flat: small noise strengths, toned-down toRGB
    weights, and a real w_avg (the mean of mapped samples) so truncation does something."""
    import torch

    from stylelens.vendor.stylegan2_ada.networks import Discriminator, Generator

    torch.manual_seed(seed)
    G = Generator(**G_kwargs)
    D = Discriminator(**D_kwargs)
    tone_generator(G, w_avg_samples)
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False)


def tone_generator(G: Any, w_avg_samples: int) -> None:
    """Make freshly initialised weights draw non-flat images, in place (any StyleGAN2-layout generator, ours or
    NVIDIA's): small noise strengths, toned-down toRGB weights, and w_avg set to the mean of mapped samples."""
    import torch

    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith('noise_strength'):
                param.copy_(0.05 * torch.randn([]).abs())
            elif name.endswith('torgb.weight'):
                param.mul_(0.3)
        G.mapping.w_avg.copy_(G.mapping(torch.randn([w_avg_samples, G.z_dim]), None)[:, 0].mean(dim=0))


def worker_build(args: argparse.Namespace) -> dict[str, Any]:
    """Build the paper256-scale snapshot (G, D, G_ema) from the fixed seed and write it in the official layout."""
    import copy

    from stylelens.loading.official_writer import dump_snapshot

    start = time.perf_counter()
    G, D = random_networks(G_KWARGS, D_KWARGS, NETWORK_SEED, w_avg_samples=1024)
    G_ema = copy.deepcopy(G)  # a separate copy, as in training snapshots, so the file holds three networks
    snapshot = dict(G=G, D=D, G_ema=G_ema, augment_pipe=None,
                    training_set_kwargs=dict(class_name=None, resolution=256, use_labels=False,
                                             note='stylelens benchmark network: random weights, not trained'))
    dump_snapshot(snapshot, args.network)
    return dict(seconds=time.perf_counter() - start, bytes=os.path.getsize(args.network),
                g_params=sum(p.numel() for p in G.parameters()), d_params=sum(p.numel() for p in D.parameters()))


def ensure_network(out_dir: Path) -> tuple[Path, dict[str, Any], bool]:
    """The cached benchmark snapshot, built first if missing or built from a different configuration; also says
    whether it was just built."""
    path = out_dir / NETWORK_FILE
    sidecar = path.with_name(path.name + '.json')
    config = json.loads(json.dumps(dict(seed=NETWORK_SEED, G_kwargs=G_KWARGS, D_kwargs=D_KWARGS)))
    if path.is_file() and sidecar.is_file():
        info = json.loads(sidecar.read_text())
        if info.get('config') == config and info.get('bytes') == path.stat().st_size:
            log(f'using the cached {path}')
            return path, info, False
    log(f'building the paper256-scale snapshot (seed {NETWORK_SEED}) at {path}')
    built = run_worker('build', path)
    info = dict(config=config, **built)
    sidecar.write_text(json.dumps(info, indent=2) + '\n')
    log(f'built in {built["seconds"]:.1f} s: {built["bytes"] / 2 ** 20:.0f} MiB, G {built["g_params"] / 1e6:.1f} M '
        f'parameters, D {built["d_params"] / 1e6:.1f} M parameters')
    return path, info, True
