"""Shared fixtures and helpers: where the oracle lives, and tiny networks written as snapshots."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ORACLE_DIR = Path(os.environ.get('STYLELENS_ORACLE_DIR', REPO.parent / 'shared' / 'oracle'))


@pytest.fixture(scope='session')
def oracle_dir() -> Path:
    """The official-output fixtures (env STYLELENS_ORACLE_DIR, default ../shared/oracle); skip if absent."""
    if not (ORACLE_DIR / 'README.md').is_file():
        pytest.skip(f'oracle fixtures not found at {ORACLE_DIR} (set STYLELENS_ORACLE_DIR to the shared oracle '
                    f'directory)')
    return ORACLE_DIR


# ---------------------------------------------------------------------------------------------------------------
# Tiny networks written as official-layout snapshots (import with `from conftest import tiny_snapshot_path`).

def tiny_networks(*, z_dim: int = 16, w_dim: int = 16, c_dim: int = 0, img_resolution: int = 16,
                  img_channels: int = 3, g_architecture: str = 'skip', d_architecture: str = 'resnet',
                  channel_base: int = 256, channel_max: int = 32, mapping_layers: int = 2,
                  mbstd_group_size: int = 2, seed: int = 0) -> dict:
    """G, D and G_ema of a tiny StyleGAN2 built with our vendor classes, every parameter and buffer perturbed
    (G and G_ema independently, so they differ), in eval mode without gradients, as snapshots store them."""
    import torch

    from stylelens.vendor.stylegan2_ada.networks import Discriminator, Generator

    with torch.random.fork_rng():  # seeded construction without disturbing the caller's random state
        torch.manual_seed(seed)
        G = Generator(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                      img_channels=img_channels, mapping_kwargs=dict(num_layers=mapping_layers),
                      synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max,
                                            architecture=g_architecture, conv_clamp=256))
        D = Discriminator(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
                          architecture=d_architecture, channel_base=channel_base, channel_max=channel_max,
                          conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=mbstd_group_size))
    G_ema = copy.deepcopy(G)
    nets = dict(G=G, D=D, G_ema=G_ema)
    for offset, net in enumerate(nets.values(), start=1):
        perturb_(net, seed=seed * 10 + offset)
        net.eval().requires_grad_(False)
    return nets


def perturb_(net, seed: int) -> None:
    """Move every parameter and buffer off its init value, seeded: filters become non-symmetric, noise strengths and
    w_avg non-zero, weights and biases shifted."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
            noise = torch.randn(tensor.shape, generator=gen)
            if name.endswith('resample_filter'):
                tensor.mul_(1 + 0.05 * noise)
            elif name.endswith('noise_strength'):
                tensor.copy_(0.1 * noise)
            elif name.endswith('w_avg'):
                tensor.copy_(0.5 * noise)
            else:
                tensor.add_(0.1 * noise)
                if name.endswith('torgb.weight'):
                    tensor.mul_(0.3)  # keeps images mostly inside [-1, 1]


def tiny_snapshot(**arch) -> dict:
    """A snapshot dict as training_loop.py writes it: G, D, G_ema, augment_pipe=None, training_set_kwargs."""
    nets = tiny_networks(**arch)
    training_set_kwargs = dict(class_name='training.dataset.ImageFolderDataset', path='tiny.zip',
                               use_labels=bool(arch.get('c_dim', 0)), max_size=100, xflip=False, random_seed=0,
                               resolution=arch.get('img_resolution', 16))
    return dict(G=nets['G'], D=nets['D'], G_ema=nets['G_ema'], augment_pipe=None,
                training_set_kwargs=training_set_kwargs)


def tiny_snapshot_path(tmp_path: Path, *, name: str = 'tiny.pkl', protocol: int = 4, snapshot: dict | None = None,
                       **arch) -> Path:
    """Write `snapshot` (default: `tiny_snapshot(**arch)`) with `dump_snapshot` to tmp_path/name; return the path."""
    from stylelens.loading.official_writer import dump_snapshot

    path = Path(tmp_path) / name
    dump_snapshot(snapshot if snapshot is not None else tiny_snapshot(**arch), path, protocol=protocol)
    return path


# ---------------------------------------------------------------------------------------------------------------
# The shared CIFAR-10 subset and single-threaded runs, for the from-scratch tests.

def cifar_subset() -> Path:
    """The shared CIFAR-10 subset tarball (env STYLELENS_SHARED_DIR, default ../shared); skip if absent."""
    shared = Path(os.environ.get('STYLELENS_SHARED_DIR', REPO.parent / 'shared'))
    path = shared / 'data' / 'cifar-10-subset-python.tar.gz'
    if not path.is_file():
        pytest.skip(f'shared CIFAR-10 subset not found at {path} (set STYLELENS_SHARED_DIR to the shared directory)')
    return path


@pytest.fixture(scope='module')
def cifar() -> str:
    """The --data spec of the whole shared CIFAR-10 subset."""
    return f'cifar10:{cifar_subset()}'


@pytest.fixture(scope='module')
def dogs() -> str:
    """The --data spec of the shared CIFAR-10 subset's dogs."""
    return f'cifar10:{cifar_subset()}:dog'


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """STYLELENS_CACHE in the test's own folder (use with `pytestmark = pytest.mark.usefixtures('private_cache')`)."""
    monkeypatch.setenv('STYLELENS_CACHE', str(tmp_path / 'cache'))


@pytest.fixture
def one_thread():
    """One CPU thread: tiny models are dominated by thread start-up, and results must not depend on it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_stylelens(*args: str, cwd: Path | None = None, timeout: float = 60):
    """The installed console script, single-threaded (OMP_NUM_THREADS=1), output captured."""
    import subprocess
    import sys

    script = Path(sys.executable).with_name('stylelens')
    return subprocess.run([str(script), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
