"""The classifier and the mode report: a tiny real training run on the shared CIFAR-10 subset at 16x16 through the
console script, divergences on known histograms, closed-form mode reports with fake generators, and errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from conftest import run_stylelens as stylelens
from stylelens.cli import cli
from stylelens.errors import StylelensError
from stylelens.scratch import classifier as sc

RESOLUTION = 16
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def trained(cifar: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier trained for a few steps at 16x16 through `stylelens classifier train`; its folder."""
    outdir = tmp_path_factory.mktemp('classifier')
    result = stylelens('classifier', 'train', '--data', cifar, '--resolution', str(RESOLUTION), '--epochs', '1',
                       '--max-steps', '15', '--batch', '64', '--width', '16', '--precision', 'fp32',
                       '--device', 'cpu', '--outdir', str(outdir))
    assert result.returncode == 0, result.stderr
    assert 'test accuracy' in result.stdout
    return outdir


@pytest.fixture(scope='module')
def test_images(cifar: str) -> torch.Tensor:
    from stylelens.datasets import load_dataset

    return load_dataset(cifar, 'test', RESOLUTION).images


class ConstantGenerator(nn.Module):
    """Every sample is the same image."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.z_dim, self.c_dim = 4, 0
        self.register_buffer('image', image)
        self.scale = nn.Parameter(torch.ones([]))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.image.expand(len(z), -1, -1, -1) * self.scale


class ReplayGenerator(nn.Module):
    """Returns the bank's images in order, call after call (a 'generator' with the data's distribution)."""

    def __init__(self, bank: torch.Tensor):
        super().__init__()
        self.z_dim, self.c_dim, self.position = 4, 0, 0
        self.register_buffer('bank', bank)
        self.scale = nn.Parameter(torch.ones([]))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out = self.bank[self.position:self.position + len(z)]
        self.position += len(z)
        return out * self.scale


def test_training_outputs(trained: Path) -> None:
    for name in ('classifier.pt', 'confusion.png', 'manifest.json'):
        assert (trained / name).is_file(), name
    extra = json.loads((trained / 'manifest.json').read_text())['extra']
    assert 0 <= extra['test_accuracy'] <= 1 and extra['test_images'] > 0
    assert len(extra['confusion']) == 10 and all(0 <= a <= 1 for a in extra['per_class_accuracy'].values())
    with Image.open(trained / 'confusion.png') as image:
        assert image.size[0] > 100
    state = torch.load(trained / 'classifier.pt', weights_only=True)
    assert state['arch'] == 'discriminator' and state['resolution'] == RESOLUTION and len(state['class_names']) == 10
    classifier = sc.load_classifier(trained / 'classifier.pt')
    assert classifier.num_classes == 10 and classifier.reference_diversity > 0
    assert classifier.features(torch.zeros([2, 3, 32, 32])).shape[0] == 2


def test_small_cnn_trains(cifar: str, tmp_path: Path) -> None:
    summary = sc.train_classifier(cifar, tmp_path, epochs=1, batch=32, lr=1e-3, seed=1, resolution=RESOLUTION,
                                  arch='small-cnn', max_steps=2, width=8, device='cpu', precision='fp32',
                                  progress=False)
    assert 0 <= summary['test_accuracy'] <= 1
    assert sc.load_classifier(tmp_path / 'classifier.pt').arch == 'small-cnn'


def test_divergences_on_known_histograms() -> None:
    uniform, peaked = np.ones(10), np.eye(10)[3] * 50
    assert sc.js_divergence(uniform, uniform * 7) == pytest.approx(0, abs=1e-12)
    assert sc.kl_divergence(uniform, uniform) == pytest.approx(0, abs=1e-12)
    assert sc.total_variation(uniform, uniform) == pytest.approx(0, abs=1e-12)
    assert sc.js_divergence([1, 0], [0, 1]) == pytest.approx(1)
    assert sc.total_variation([1, 0], [0, 1]) == pytest.approx(1)
    assert sc.kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.5 + 0.5 * math.log2(2 / 3))
    expected_js = (math.log2(1 / 0.55) + 0.1 * math.log2(0.1 / 0.55) + 0.9 * math.log2(0.1 / 0.05)) / 2
    assert sc.js_divergence(peaked, uniform) == pytest.approx(expected_js)
    assert sc.total_variation(peaked, uniform) == pytest.approx(0.9)
    assert sc.missing_modes(peaked, uniform) == [k for k in range(10) if k != 3]
    assert sc.missing_modes([10, 10, 0, 0], [1, 1, 0, 0]) == []


def test_collapsed_generator(trained: Path, test_images: torch.Tensor) -> None:
    classifier = sc.load_classifier(trained / 'classifier.pt')
    report = sc.mode_report(ConstantGenerator(test_images[0]), classifier, 40, seed=0, batch=16, progress=False)
    assert report['missing_modes'] == 9 and report['js'] > 0.7 and report['tv'] == pytest.approx(0.9)
    assert report['diversity'] == pytest.approx(0, abs=1e-6)
    assert sum(len(s) for s in report['samples'].values()) == sc.SAMPLES_PER_CLASS


def test_matching_generator(trained: Path, test_images: torch.Tensor, tmp_path: Path) -> None:
    classifier = sc.load_classifier(trained / 'classifier.pt')
    labels, _ = classifier.predict(test_images)
    report = sc.mode_report(ReplayGenerator(test_images), classifier, len(test_images), seed=0, batch=100,
                            reference_labels=labels, progress=False)
    assert report['js'] == pytest.approx(0, abs=1e-9) and report['kl'] == pytest.approx(0, abs=1e-9)
    assert report['tv'] == pytest.approx(0, abs=1e-9)
    assert report['diversity'] == pytest.approx(1, abs=1e-3)
    paths = sc.write_mode_figures(report, tmp_path)
    assert all(Image.open(p).size[0] > 100 for p in paths)


def test_conditional_latents_cycle_classes() -> None:
    G = nn.Module()
    G.z_dim, G.c_dim = 4, 3
    z, c = sc._latents(G, 7, 0, None, torch.device('cpu'))
    assert z.shape == (7, 4) and c.argmax(1).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert sc._latents(G, 3, 0, 2, torch.device('cpu'))[1].argmax(1).tolist() == [2, 2, 2]
    assert torch.equal(z, sc._latents(G, 7, 0, None, torch.device('cpu'))[0])
    with pytest.raises(StylelensError, match='out of range'):
        sc._latents(G, 3, 0, 5, torch.device('cpu'))


def test_modes_demo_end_to_end(trained: Path, cifar: str, tmp_path: Path) -> None:
    result = stylelens('modes', '--network', 'demo', '--classifier', str(trained / 'classifier.pt'), '--data', cifar,
                       '--num', '64', '--batch', '32', '--device', 'cpu', '--outdir', str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in ('modes.png', 'mode_samples.png', 'manifest.json'):
        assert (tmp_path / name).is_file(), name
    extra = json.loads((tmp_path / 'manifest.json').read_text())['extra']
    assert extra['num'] == 64 and sum(extra['generated_counts']) == 64 and 0 <= extra['js'] <= 1
    assert 'samples' not in extra


@pytest.mark.parametrize('args, message', [
    (['classifier', 'train', '--data', 'cifar10:nowhere.tar.gz', '--outdir', 'x'], 'does not exist'),
    (['classifier', 'train', '--data', 'cifar10:nowhere.tar.gz', '--arch', 'vit', '--outdir', 'x'],
     "unknown classifier architecture 'vit'"),
    (['modes', '--network', 'demo', '--classifier', 'missing.pt', '--outdir', 'x'], 'does not exist'),
    (['modes', '--classifier', 'missing.pt', '--outdir', 'x'], 'exactly one of --network or --run'),
])
def test_bad_inputs_give_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [str(tmp_path / 'out') if a == 'x' else a for a in args])
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and message in lines[0], result.output


def test_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'other.pt')
    with pytest.raises(StylelensError, match='not a stylelens classifier'):
        sc.load_classifier(tmp_path / 'other.pt')
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(StylelensError, match='cannot read'):
        sc.load_classifier(tmp_path / 'junk.pt')


def test_console_script_error_is_one_line(tmp_path: Path) -> None:
    result = stylelens('modes', '--network', 'demo', '--classifier', str(tmp_path / 'none.pt'), '--outdir',
                       str(tmp_path / 'out'))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith('Error:'), result.stderr


def test_help_has_examples() -> None:
    for args in (['classifier', 'train', '--help'], ['modes', '--help'], ['classifier', '--help']):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0 and 'Example' in result.output, args
