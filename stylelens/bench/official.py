"""NVIDIA's own scripts, run side by side: checks an official checkout, builds the benchmark network with its code,
and says how to call its scripts. Nothing of NVIDIA's is imported here; their classes run in subprocesses.

A checkout is NVlabs/stylegan2-ada-pytorch at d72cc7d (or NVlabs/stylegan3 at c233a91) with the CPU patch of
`../shared/official/` applied (`git apply --unidiff-zero PATCH`): device `cpu`, `force_fp32=True`.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stylelens.bench.timing import log

# kind -> (commit the patch is for, files that must exist, patched file, the text the patch puts there).
KINDS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    'stylegan2-ada-pytorch': ('d72cc7d', ('generate.py', 'style_mixing.py', 'legacy.py', 'training/networks.py'),
                              'generate.py', "torch.device('cpu')"),
    'stylegan3': ('c233a91', ('gen_images.py', 'legacy.py', 'training/networks_stylegan3.py'), 'gen_images.py',
                  "torch.device('cpu')"),
}

# Run in the checkout (its folder first on sys.path) with a JSON config as argv[1]: build G and D with NVIDIA's
# classes from a seed, as train.py would configure them, tone the random weights with stylelens.bench.network's
# tone_generator (the same draws in the same order), and pickle the snapshot as training_loop.py writes it (so
# NVIDIA's loader, which executes the embedded source, reads code that NVIDIA's own classes put there).
BUILD_SNIPPET = r"""
import copy, json, pickle, sys
sys.path.insert(0, '.')
import torch, dnnlib
from stylelens.bench.network import tone_generator

def easy(value):
    return dnnlib.EasyDict({k: easy(v) for k, v in value.items()}) if isinstance(value, dict) else value

cfg = json.loads(sys.argv[1])
module = __import__(cfg['g_module'], fromlist=['Generator'])
D_class = __import__(cfg['d_module'], fromlist=['Discriminator']).Discriminator
torch.manual_seed(cfg['seed'])
G = module.Generator(**easy(cfg['G_kwargs']))
D = D_class(**easy(cfg['D_kwargs']))
tone_generator(G, cfg['w_avg_samples'])
snapshot = dict(training_set_kwargs=dnnlib.EasyDict(resolution=G.img_resolution, use_labels=False))
for key, net in (('G', G), ('D', D), ('G_ema', copy.deepcopy(G))):
    snapshot[key] = copy.deepcopy(net).eval().requires_grad_(False).cpu()
snapshot['augment_pipe'] = None
with open(cfg['out'], 'wb') as f:
    pickle.dump(snapshot, f)
print(json.dumps(dict(g_params=sum(p.numel() for p in G.parameters()),
                      d_params=sum(p.numel() for p in D.parameters()))))
"""


class CheckoutError(Exception):
    """An OFFICIAL / STYLEGAN3 folder that is not a patched checkout of the expected repository."""


@dataclass(frozen=True)
class Checkout:
    """A patched official checkout: its folder, which repository, and the commit its patch is for."""

    path: Path
    kind: str
    commit: str

    def script(self, name: str) -> list[str]:
        """The command prefix that runs one of its scripts with this interpreter."""
        return [sys.executable, str(self.path / name)]


def check_checkout(path: str | Path, kind: str) -> Checkout:
    """`path` as a checkout of `kind`, or a one-line CheckoutError saying what is missing or unpatched."""
    commit, files, patched, marker = KINDS[kind]
    root = Path(path).expanduser().resolve()
    missing = [name for name in files if not (root / name).is_file()]
    if missing:
        raise CheckoutError(f'{root} is not a checkout of NVlabs/{kind} (missing: {", ".join(missing)}); check '
                            f'out commit {commit} there')
    if marker not in (root / patched).read_text():
        raise CheckoutError(f'{root}/{patched} still runs on CUDA: apply ../shared/official/{kind}-cpu.patch with '
                            f'`git apply --unidiff-zero` at the root of the checkout')
    return Checkout(root, kind, commit)


def build_official_network(checkout: Checkout, out: Path, G_kwargs: dict[str, Any], D_kwargs: dict[str, Any],
                           seed: int, g_module: str, d_module: str) -> dict[str, Any]:
    """Build a snapshot with the checkout's own classes into `out` (cached: rebuilt only when the configuration or
    the checkout's network source changes); returns its description for bench.json."""
    out = out.resolve()  # the builder runs in the checkout's folder
    source = hashlib.sha256((checkout.path / (g_module.replace('.', '/') + '.py')).read_bytes()).hexdigest()
    config = dict(G_kwargs=G_kwargs, D_kwargs=D_kwargs, seed=seed, g_module=g_module, d_module=d_module,
                  w_avg_samples=1024, source_sha256=source)
    sidecar = out.with_name(out.name + '.json')
    if out.is_file() and sidecar.is_file():
        info = json.loads(sidecar.read_text())
        if info.get('config') == config and info.get('bytes') == out.stat().st_size:
            log(f'using the cached {out} (built with {checkout.path})')
            return info
    log(f"building {out.name} with NVIDIA's {g_module}.Generator from {checkout.path}")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, '-c', BUILD_SNIPPET, json.dumps(dict(config, out=str(out)))],
                          cwd=checkout.path, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CheckoutError(f'building the network with {checkout.path} failed (exit {proc.returncode}): '
                            f'{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no message"}')
    info = dict(config=config, file=str(out), bytes=out.stat().st_size, checkout=str(checkout.path),
                commit=checkout.commit, **json.loads(proc.stdout.strip().splitlines()[-1]))
    sidecar.write_text(json.dumps(info, indent=2) + '\n')
    return info


def stylelens_can_load(network: Path) -> str | None:
    """None if `stylelens.load_generator` reads `network` (tried in a fresh interpreter), else its one-line error."""
    code = f'import stylelens; stylelens.load_generator({str(network)!r}, progress=False)'
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f'exit {proc.returncode}'


def png_differences(official_dir: Path, ours_dir: Path, names: list[str]) -> dict[str, Any] | None:
    """How far our PNGs are from the official ones with the same names, in uint8 levels (max, mean, 99th
    percentile over all pixels); None if a file is missing on either side."""
    import numpy as np
    from PIL import Image

    diffs = []
    for name in names:
        a, b = official_dir / name, ours_dir / name
        if not (a.is_file() and b.is_file()):
            return None
        with Image.open(a) as x, Image.open(b) as y:
            diffs.append(np.abs(np.asarray(x, dtype=np.int16) - np.asarray(y, dtype=np.int16)).ravel())
    every = np.concatenate(diffs)
    return dict(files=len(names), max=int(every.max()), mean=float(every.mean()),
                p99=float(np.percentile(every, 99)))
