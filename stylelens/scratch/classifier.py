"""An image classifier for labeled data, and the mode-coverage report it makes possible for any generator.

`train_classifier` fits the DCGAN discriminator with a class head (the classic assignment's step before the GAN)
or a small CNN, evaluates it on the test split and saves `classifier.pt`: only plain types and tensors, so
`torch.load(weights_only=True)` reads it. `mode_report` then classifies generated samples and compares the
histogram of predicted classes with the data's: KL, JS, total variation, missing modes and feature diversity.

Diversity: the mean pairwise Euclidean distance between the classifier's penultimate features over the generated
set, divided by the same mean over the data's test images (measured at training time and stored in
`classifier.pt`, so the score needs no data download). About 1 means real-like spread; near 0 means collapse.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylelens.choices import CLASSIFIER_PRECISION_CHOICES, check_choice
from stylelens.datasets import ImageDataset, load_dataset
from stylelens.devices import pick_device, precision_context, resolve_precision
from stylelens.errors import StylelensError
from stylelens.outputs import atomic_path, ensure_outdir, to_uint8, write_manifest
from stylelens.progress import progress_bar
from stylelens.scratch.models import DCGANDiscriminator
from stylelens.viz import new_figure, save_figure

ARCHS = ('discriminator', 'small-cnn')
CHECKPOINT_FORMAT = 'stylelens-classifier'
CHECKPOINT_VERSION = 1
MAX_DIVERSITY_SAMPLES = 2000
SAMPLES_PER_CLASS = 8
KL_FLOOR = 1e-10


# ------------------------------------------------------------------------------------------------ models

class DiscriminatorClassifier(nn.Module):
    """The DCGAN discriminator with a class head; only the class logits are used (its real/fake head is not)."""

    def __init__(self, resolution: int, channels: int, num_classes: int, width: int = 64):
        super().__init__()
        self.D = DCGANDiscriminator(img_resolution=resolution, img_channels=channels, base_channels=width,
                                    num_classes=num_classes)

    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits, features): the features are what the class head reads, the last block's map flattened."""
        x = images
        for res in self.D.block_resolutions:
            x = getattr(self.D, f'b{res}')(x)
        return self.D.class_head(x).flatten(1), x.flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(images)[0]


class SmallCNN(nn.Module):
    """Three 3x3 convolution + BatchNorm + ReLU + 2x2 max-pool stages, global average pool, a hidden linear layer
    (the features) and the class layer."""

    def __init__(self, resolution: int, channels: int, num_classes: int, width: int = 64):
        super().__init__()
        stages, in_channels = [], channels
        for out_channels in (width // 2, width, width * 2):
            stages += [nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels),
                       nn.ReLU(), nn.MaxPool2d(2)]
            in_channels = out_channels
        self.body = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(in_channels, width * 2), nn.ReLU())
        self.head = nn.Linear(width * 2, num_classes)

    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits, features): the features are the hidden layer's activations."""
        feats = self.body(images)
        return self.head(feats), feats

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(images)[0]


_BUILDERS: dict[str, Callable[..., nn.Module]] = {'discriminator': DiscriminatorClassifier, 'small-cnn': SmallCNN}


@dataclasses.dataclass(eq=False)
class Classifier:
    """A trained network with what it needs to be used: its input size, channels and class names."""

    net: nn.Module
    arch: str
    class_names: tuple[str, ...]
    resolution: int
    channels: int
    reference_diversity: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Float NCHW images in [-1, 1] of any size, converted to this classifier's channels and resized to its
        resolution with an antialiased bilinear filter."""
        x = images.float().clamp(-1, 1)
        if x.shape[1] != self.channels:
            if x.shape[1] == 3 and self.channels == 1:
                x = x.mean(dim=1, keepdim=True)
            elif x.shape[1] == 1 and self.channels == 3:
                x = x.expand(-1, 3, -1, -1)
            else:
                raise StylelensError(f'cannot feed {x.shape[1]}-channel images to a {self.channels}-channel '
                                     f'classifier')
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode='bilinear', align_corners=False,
                              antialias=True)
        return x.to(self.device)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted classes [N], penultimate features [N, F]) of prepared or raw images, on the CPU."""
        logits, feats = self.net.classify(self.prepare(images))
        return logits.argmax(dim=1).cpu(), feats.float().cpu()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features [N, F] (for diversity and feature-distance scores)."""
        return self.predict(images)[1]


def check_arch(arch: str) -> str:
    """`arch` if it is one of ARCHS, else a one-line error listing them."""
    if arch not in ARCHS:
        raise StylelensError(f"unknown classifier architecture {arch!r}: choose one of {', '.join(ARCHS)}")
    return arch


def build_classifier(arch: str, resolution: int, channels: int, num_classes: int, width: int = 64) -> nn.Module:
    """A fresh network of architecture `arch` (one of ARCHS)."""
    return _BUILDERS[check_arch(arch)](resolution=resolution, channels=channels, num_classes=num_classes, width=width)


# ------------------------------------------------------------------------------------------------ save / load

def save_classifier(classifier: Classifier, width: int, path: Path, extra: dict[str, Any]) -> Path:
    """Write `classifier.pt` atomically: state_dict, build kwargs, class names, input shape and plain metrics."""
    state = dict(format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, arch=classifier.arch,
                 kwargs=dict(resolution=classifier.resolution, channels=classifier.channels,
                             num_classes=classifier.num_classes, width=width),
                 class_names=list(classifier.class_names), resolution=classifier.resolution,
                 channels=classifier.channels, reference_diversity=classifier.reference_diversity,
                 state_dict={k: v.detach().cpu() for k, v in classifier.net.state_dict().items()}, **extra)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True; anything else is a one-line error."""
    if not path.is_file():
        raise StylelensError(f'classifier file {path} does not exist: train one with `stylelens classifier train`')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises many types for foreign or damaged files
        raise StylelensError(f'cannot read {path} as a classifier checkpoint: {str(err).splitlines()[0]}') from None
    if not isinstance(state, dict) or state.get('format') != CHECKPOINT_FORMAT:
        raise StylelensError(f'{path} is not a stylelens classifier (made by `stylelens classifier train`)')
    return state


def load_classifier(path: str | Path, device: str | torch.device = 'cpu') -> Classifier:
    """Rebuild a classifier saved by `train_classifier`, in eval mode on `device`."""
    state = _read_checkpoint(Path(path))
    net = build_classifier(state['arch'], **state['kwargs'])
    net.load_state_dict(state['state_dict'])
    net.eval().requires_grad_(False).to(device)
    return Classifier(net, state['arch'], tuple(state['class_names']), state['resolution'], state['channels'],
                      float(state['reference_diversity']))


# ------------------------------------------------------------------------------------------------ training

def _check_training_options(epochs: int, batch: int, lr: float, max_steps: int | None, arch: str,
                            precision: str) -> None:
    """One-line errors for non-positive counts and unknown choices."""
    for name, value in (('epochs', epochs), ('batch', batch), ('lr', lr), ('max-steps', max_steps)):
        if value is not None and not value > 0:
            raise StylelensError(f'--{name} must be positive (got {value})')
    check_arch(arch)
    check_choice(precision, CLASSIFIER_PRECISION_CHOICES, 'precision')


def _load_splits(data_spec: str, resolution: int, batch: int) -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits at `resolution`, refusing unlabeled data, fewer than two classes or too few images."""
    train_set = load_dataset(data_spec, 'train', resolution)
    if not train_set.num_classes:
        raise StylelensError(f'{data_spec} has no labels: a classifier needs a labeled dataset (cifar10, mnist, '
                             f'fashion-mnist)')
    if len(train_set.class_counts()) < 2:
        raise StylelensError(f'{data_spec} holds a single class: a classifier needs at least two')
    if len(train_set) < batch:
        raise StylelensError(f'{data_spec} has {len(train_set)} training images, fewer than one --batch ({batch})')
    return train_set, load_dataset(data_spec, 'test', resolution)


def _fit(net: nn.Module, data: ImageDataset, *, epochs: int, batch: int, lr: float, seed: int,
         max_steps: int | None, device: torch.device, precision: str, progress: bool) -> dict[str, float]:
    """Cross-entropy with Adam; each epoch's batch order depends only on the seed. Returns the last epoch's mean
    loss and accuracy on its training batches."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
    steps = min(len(data) // batch, max_steps or math.inf)
    losses, correct = [], 0
    with progress_bar(steps * epochs, 'training classifier', progress) as bar:
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            losses, correct = [], 0
            bar.set_description(f'epoch {epoch}/{epochs}')
            for idx in order[:steps * batch].view(steps, batch):
                images, labels = data.images[idx].to(device), data.labels[idx].to(device)
                with precision_context(precision, device):
                    logits = net(images)
                loss = F.cross_entropy(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                correct += int((logits.argmax(1) == labels).sum())
                bar.update(1)
    return dict(train_loss=float(np.mean(losses)), train_accuracy=correct / (steps * batch))


def _predict_all(classifier: Classifier, images: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and features for many images, `batch` at a time."""
    parts = [classifier.predict(images[i:i + batch]) for i in range(0, len(images), batch)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def mean_pairwise_distance(features: torch.Tensor, limit: int = MAX_DIVERSITY_SAMPLES) -> float:
    """Mean Euclidean distance over all pairs of distinct rows (the first `limit` rows); 0 for fewer than two."""
    x = features[:limit].double()
    n = len(x)
    if n < 2:
        return 0.0
    return float(torch.cdist(x, x).sum() / (n * (n - 1)))


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> np.ndarray:
    """Counts [K, K]: row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes).numpy()


def _evaluation(confusion: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Test accuracy and per-class accuracy (classes with test images only)."""
    totals = confusion.sum(axis=1)
    per_class = {name: float(confusion[i, i] / totals[i]) for i, name in enumerate(class_names) if totals[i]}
    return dict(test_accuracy=float(np.trace(confusion) / max(totals.sum(), 1)), per_class_accuracy=per_class,
                test_images=int(totals.sum()))


def train_classifier(data_spec: str, outdir: str | Path, *, epochs: int, batch: int, lr: float, seed: int,
                     resolution: int = 32, arch: str = 'discriminator', max_steps: int | None = None,
                     width: int = 64, device: str = 'auto', precision: str = 'auto',
                     progress: bool = True) -> dict[str, Any]:
    """Train a classifier on `data_spec`'s train split, evaluate it on the test split and write `classifier.pt`,
    `confusion.png` and `manifest.json` to `outdir`. Returns the summary (accuracies, confusion, timing)."""
    start = time.perf_counter()
    options = dict(data=data_spec, epochs=epochs, batch=batch, lr=lr, seed=seed, resolution=resolution, arch=arch,
                   max_steps=max_steps, width=width, device=device, precision=precision)
    _check_training_options(epochs, batch, lr, max_steps, arch, precision)
    train_set, test_set = _load_splits(data_spec, resolution, batch)
    outdir = ensure_outdir(outdir)
    torch_device = pick_device(device)
    precision = resolve_precision(precision, torch_device)
    torch.manual_seed(seed)
    net = build_classifier(arch, train_set.resolution, train_set.channels, train_set.num_classes, width)
    fit = _fit(net.to(torch_device), train_set, epochs=epochs, batch=batch, lr=lr, seed=seed, max_steps=max_steps,
               device=torch_device, precision=precision, progress=progress)
    net.eval().requires_grad_(False)
    classifier = Classifier(net, arch, train_set.class_names, train_set.resolution, train_set.channels, 0.0)
    predictions, feats = _predict_all(classifier, test_set.images, batch)
    classifier.reference_diversity = mean_pairwise_distance(feats)
    confusion = confusion_matrix(test_set.labels, predictions, classifier.num_classes)
    evaluation = _evaluation(confusion, classifier.class_names)
    save_classifier(classifier, width, outdir / 'classifier.pt', dict(test_accuracy=evaluation['test_accuracy']))
    confusion_figure(confusion, classifier.class_names, evaluation['test_accuracy'], outdir / 'confusion.png')
    summary = dict(**evaluation, **fit, confusion=confusion.tolist(), class_names=list(classifier.class_names),
                   reference_diversity=classifier.reference_diversity, device=str(torch_device),
                   precision=precision, train_images=len(train_set), wall_time_s=round(time.perf_counter() - start, 3))
    write_manifest(outdir, command='classifier train', options=options, extra=summary)
    return summary


# ------------------------------------------------------------------------------------------------ divergences

def normalize(counts: np.ndarray) -> np.ndarray:
    """Counts -> probabilities (all zeros stay zeros)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in bits; q is floored at KL_FLOOR so a class q lacks gives a large finite value, not infinity."""
    p, q = normalize(p), np.maximum(normalize(q), KL_FLOOR)
    mask = p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / q[mask])))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits: symmetric, 0 for equal distributions, 1 for disjoint ones."""
    p, q = normalize(p), normalize(q)
    m = (p + q) / 2
    return max(0.0, (kl_divergence(p, m) + kl_divergence(q, m)) / 2)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation distance: half the L1 distance, the largest difference in probability of any event."""
    return float(np.abs(normalize(p) - normalize(q)).sum() / 2)


def missing_modes(generated: np.ndarray, reference: np.ndarray) -> list[int]:
    """Classes present in the reference that get less than 1/(4K) of the generated samples, K = classes present."""
    present = np.flatnonzero(normalize(reference) > 0)
    share = normalize(generated)
    return [int(k) for k in present if share[k] < 1 / (4 * len(present))]


# ------------------------------------------------------------------------------------------------ mode report

def _latents(G: nn.Module, num: int, seed: int, class_idx: int | None, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded z [num, z_dim] and one-hot c [num, c_dim]: classes cycle 0..c_dim-1 unless `class_idx` is given."""
    z = torch.randn([num, G.z_dim], generator=torch.Generator().manual_seed(seed))
    c_dim = getattr(G, 'c_dim', 0)
    if class_idx is not None and not c_dim:
        raise StylelensError('--class needs a conditional generator; this one has no classes')
    if class_idx is not None and not 0 <= class_idx < c_dim:
        raise StylelensError(f'--class {class_idx} is out of range: this generator has classes 0-{c_dim - 1}')
    classes = torch.full([num], class_idx) if class_idx is not None else torch.arange(num) % max(c_dim, 1)
    c = F.one_hot(classes, c_dim).float() if c_dim else torch.zeros([num, 0])
    return z.to(device), c.to(device)


@torch.no_grad()
def _generate(G: nn.Module, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Images from G: StyleGAN-style generators (with `synthesis`) use constant noise."""
    if hasattr(G, 'synthesis'):
        return G(z, c, noise_mode='const').float()
    return G(z, c).float()


def _reference_counts(reference_labels: Any, num_classes: int) -> np.ndarray:
    """Class counts of the reference labels (uniform when none are given), ignoring unlabeled (-1) entries."""
    if reference_labels is None:
        return np.ones(num_classes)
    labels = torch.as_tensor(reference_labels).long()
    labels = labels[labels >= 0]
    if not len(labels):
        raise StylelensError('the reference data has no labels: use a labeled --data spec')
    if int(labels.max()) >= num_classes:
        raise StylelensError(f'reference label {int(labels.max())} is out of range for a {num_classes}-class '
                             f'classifier: is --data the dataset the classifier was trained on?')
    return torch.bincount(labels, minlength=num_classes).numpy().astype(np.float64)


def _keep_samples(samples: list[list[np.ndarray]], images: torch.Tensor, predictions: torch.Tensor) -> None:
    """Keep up to SAMPLES_PER_CLASS uint8 images per predicted class."""
    for image, label in zip(to_uint8(images), predictions.tolist()):
        if len(samples[label]) < SAMPLES_PER_CLASS:
            samples[label].append(image)


def mode_report(G: nn.Module, classifier: Classifier, num: int, *, seed: int, batch: int,
                class_idx: int | None = None, reference_labels: Any = None, progress: bool = True
                ) -> dict[str, Any]:
    """Classify `num` seeded samples of G and compare the predicted-class histogram with the reference labels'
    (uniform if none). `samples` holds a few classifier-sized uint8 images per predicted class, for figures."""
    if num < 1 or batch < 1:
        raise StylelensError(f'--num and --batch must be positive (got {num} and {batch})')
    K = classifier.num_classes
    reference = _reference_counts(reference_labels, K)
    z, c = _latents(G, num, seed, class_idx, next(G.parameters()).device)
    predictions, feats, samples = [], [], [[] for _ in range(K)]
    with progress_bar(num, 'classifying samples', progress) as bar:
        for start in range(0, num, batch):
            images = classifier.prepare(_generate(G, z[start:start + batch], c[start:start + batch]))
            labels, batch_feats = classifier.predict(images)
            _keep_samples(samples, images, labels)
            predictions.append(labels)
            feats.append(batch_feats)
            bar.update(len(labels))
    counts = torch.bincount(torch.cat(predictions), minlength=K).numpy()
    return _summary(counts, reference, classifier, mean_pairwise_distance(torch.cat(feats)), samples)


def _summary(counts: np.ndarray, reference: np.ndarray, classifier: Classifier, diversity: float,
             samples: list[list[np.ndarray]]) -> dict[str, Any]:
    """The report dict: histograms, divergences, missing modes and diversity."""
    names = classifier.class_names
    missing = missing_modes(counts, reference)
    real = classifier.reference_diversity
    return dict(num=int(counts.sum()), class_names=list(names), generated_counts=counts.tolist(),
                generated_fraction=normalize(counts).tolist(), reference_fraction=normalize(reference).tolist(),
                kl=kl_divergence(counts, reference), js=js_divergence(counts, reference),
                tv=total_variation(counts, reference), missing_modes=len(missing),
                missing_classes=[names[k] for k in missing], reference_classes=int((reference > 0).sum()),
                diversity_generated=diversity, diversity_real=real,
                diversity=diversity / real if real > 0 else float('nan'),
                samples={names[k]: np.stack(s) for k, s in enumerate(samples) if s})


# ------------------------------------------------------------------------------------------------ figures





def confusion_figure(confusion: np.ndarray, class_names: tuple[str, ...], accuracy: float, path: Path) -> Path:
    """Row-normalized confusion matrix (true class per row) with class names on both axes."""
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    K = len(class_names)
    fig = new_figure(1.5 + 0.6 * K, 1.2 + 0.6 * K)
    ax = fig.add_subplot()
    image = ax.imshow(rows, cmap='Blues', vmin=0, vmax=1)
    for i in range(K):
        for j in range(K):
            ax.text(j, i, f'{rows[i, j]:.2f}', ha='center', va='center', fontsize=7,
                    color='white' if rows[i, j] > 0.5 else 'black')
    ax.set_xticks(range(K), class_names, rotation=45, ha='right')
    ax.set_yticks(range(K), class_names)
    ax.set(xlabel='predicted class', ylabel='true class', title=f'test accuracy {accuracy:.3f}')
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, path, tight=True)


def modes_figure(report: dict[str, Any], path: Path) -> Path:
    """Bars per class: share of generated samples vs share of the data, divergences in the title."""
    names, K = report['class_names'], len(report['class_names'])
    fig = new_figure(2 + 0.7 * K, 4.5)
    ax = fig.add_subplot()
    x = np.arange(K)
    ax.bar(x - 0.2, report['generated_fraction'], 0.4, label='generated')
    ax.bar(x + 0.2, report['reference_fraction'], 0.4, label='data')
    ax.axhline(1 / (4 * max(report['reference_classes'], 1)), color='gray', ls='--', lw=1, label='missing below')
    ax.set_xticks(x, names, rotation=45, ha='right')
    title = (f"KL {report['kl']:.3f} bits  JS {report['js']:.3f} bits  TV {report['tv']:.3f}  "
             f"missing {report['missing_modes']}/{report['reference_classes']}")
    ax.set(ylabel='share of samples', title=title)
    ax.legend(fontsize='small')
    return save_figure(fig, path, tight=True)


def samples_figure(report: dict[str, Any], path: Path) -> Path:
    """One row per class: up to SAMPLES_PER_CLASS generated samples the classifier put in that class."""
    names, samples = report['class_names'], report['samples']
    shape = next(iter(samples.values())).shape[1:]
    fig = new_figure(1.2 * SAMPLES_PER_CLASS + 1.5, 1.2 * len(names))
    for row, name in enumerate(names):
        ax = fig.add_subplot(len(names), 1, row + 1)
        ax.imshow(_row_image(samples.get(name), shape), cmap='gray', interpolation='nearest', vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{name}\n{report['generated_counts'][row]}", rotation=0, ha='right', va='center')
    return save_figure(fig, path, tight=True)


def _row_image(images: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """SAMPLES_PER_CLASS images of `shape` (HWC) side by side, gray where there are fewer, as uint8 HWC or HW."""
    images = np.zeros([0, *shape], np.uint8) if images is None else images
    pad = np.full([SAMPLES_PER_CLASS - len(images), *shape], 128, np.uint8)
    row = np.concatenate(list(np.concatenate([images, pad])), axis=1)
    return row[..., 0] if row.shape[-1] == 1 else row


def write_mode_figures(report: dict[str, Any], outdir: Path) -> list[Path]:
    """`modes.png` and `mode_samples.png` in `outdir`."""
    return [modes_figure(report, outdir / 'modes.png'), samples_figure(report, outdir / 'mode_samples.png')]
