"""The Inception-v3 that FID, KID and IS are defined with: TensorFlow's 2015-12-05 graph as pytorch-fid ports it.

Built here from plain ``torch.nn`` so it can be read. Three details differ from the torchvision Inception-v3 and
matter for comparable numbers: average pools skip the zero padding (``count_include_pad=False``), the last block's
pool branch takes a max instead of an average, and the classifier has 1008 outputs. The weights come from
pytorch-fid's release file (see ``checkpoints/registry.json``, ``feature_networks``), loaded with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stylelens.errors import StylelensError
from stylelens.loading.download import remembered_sha256
from stylelens.metrics.fetch import FEATURE_NETWORK, official_sha256, resolve_weights

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008
PREPROCESSING = 'uint8/255, bilinear resize to 299 (torch, align_corners=False), then 2x-1 (as pytorch-fid)'


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 0.001, as TensorFlow's), ReLU: every layer of the network."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool that, like TensorFlow's, averages only the pixels inside the image."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def same_max_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 max pool keeping the size: the pool branch of the last block in the TensorFlow graph."""
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class BlockA(nn.Module):
    """35x35 block (Mixed_5b-d): 1x1, 5x5, double 3x3 and pooled 1x1 branches."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(tf_avg_pool(x)),
        ], dim=1)


class ReductionB(nn.Module):
    """35x35 -> 17x17 (Mixed_6a): strided 3x3, strided double 3x3 and a max pool."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class BlockC(nn.Module):
    """17x17 block (Mixed_6b-e): factorised 7x7 convolutions (1x7 then 7x1) in two branches."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([self.branch1x1(x), seven, double, self.branch_pool(tf_avg_pool(x))], dim=1)


class ReductionD(nn.Module):
    """17x17 -> 8x8 (Mixed_7a): strided 3x3 after 1x1, strided 3x3 after a 7x7 pair, and a max pool."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, kernel_size=3, stride=2)],
                         dim=1)


class BlockE(nn.Module):
    """8x8 block (Mixed_7b, Mixed_7c): 3x3s split into parallel 1x3 and 3x1; `pool` is the pool branch's pooling
    (TensorFlow's average in Mixed_7b, a max in Mixed_7c)."""

    def __init__(self, in_channels: int, pool: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(self.pool(x)),
        ], dim=1)


class FIDInceptionV3(nn.Module):
    """Images in [-1, 1] at 299x299 -> pool3 features [N, 2048]; `logits` maps those to the 1008 classes.

    Module names follow torchvision (and so pytorch-fid's weight file): Conv2d_1a_3x3 ... Mixed_7c, fc.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, pool_features=32)
        self.Mixed_5c = BlockA(256, pool_features=64)
        self.Mixed_5d = BlockA(288, pool_features=64)
        self.Mixed_6a = ReductionB(288)
        self.Mixed_6b = BlockC(768, channels_7x7=128)
        self.Mixed_6c = BlockC(768, channels_7x7=160)
        self.Mixed_6d = BlockC(768, channels_7x7=160)
        self.Mixed_6e = BlockC(768, channels_7x7=192)
        self.Mixed_7a = ReductionD(768)
        self.Mixed_7b = BlockE(1280, pool=tf_avg_pool)
        self.Mixed_7c = BlockE(2048, pool=same_max_pool)
        self.fc = nn.Linear(FEATURE_DIM, NUM_LOGITS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ('5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b', '7c'):
            x = getattr(self, f'Mixed_{name}')(x)
        return x.mean(dim=(2, 3))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The 1008 class logits of pool3 features, WITHOUT the fc bias: the Inception Score's convention since
        the original TensorFlow code (which multiplied by the weight matrix only), kept by NVIDIA and
        torch-fidelity."""
        return features @ self.fc.weight.T


def prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW (1 or 3 channels) -> float32 [-1, 1] at 299x299, as pytorch-fid: scale to [0, 1], bilinear resize
    (half-pixel centres, no antialiasing), then 2x-1; grayscale is repeated to RGB."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise StylelensError(f'the Inception network takes uint8 images [N, 1 or 3, H, W], got {images.dtype} '
                             f'{tuple(images.shape)}')
    x = images.float().div_(255)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode='bilinear', align_corners=False)
    return x.mul_(2).sub_(1)


# ------------------------------------------------------------------------------------------------ weights

def _optional(key: str) -> bool:
    """BatchNorm's step counter is unused at inference; files may or may not have it."""
    return key.endswith('num_batches_tracked')


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors via the weights-only unpickler; anything else is refused in one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # what the weights-only unpickler rejects, and how, varies by torch version
        reason = ' '.join(str(error).split())[:200] or type(error).__name__
        raise StylelensError(f'{path} is not a loadable Inception weight file (torch.load with weights_only=True '
                             f'refused it: {reason}); nothing in it was run') from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StylelensError(f'{path} is not an Inception state dict (expected a dict of tensors named like '
                             f"'Mixed_5b.branch1x1.conv.weight')")
    return state


def check_state_dict(state: dict[str, torch.Tensor], net: FIDInceptionV3, path: Path | str) -> None:
    """Refuse, in one line, a state dict whose names or shapes are not those of `net` (missing, unexpected, or
    differently shaped entries, the first few named)."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items() if not _optional(k)}
    given = {k: tuple(v.shape) for k, v in state.items() if not _optional(k)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = [f'{k} {given[k]} (expected {expected[k]})' for k in expected if k in given and given[k] != expected[k]]
    problems = [f'{label}: {", ".join(items[:3])}{" ..." if len(items) > 3 else ""}'
                for label, items in (('missing', missing), ('unexpected', unexpected), ('wrong shape', wrong))
                if items]
    if problems:
        raise StylelensError(f'{path} does not hold the FID Inception weights ({"; ".join(problems)}): use '
                             f"pytorch-fid's pt_inception-2015-12-05-6726825d.pth")


def build_inception(path: str | os.PathLike) -> FIDInceptionV3:
    """The network with the weights of `path`, checked name by name and shape by shape, in eval mode on the CPU."""
    path = Path(path)
    state = _read_state_dict(path)
    with torch.device('meta'):
        net = FIDInceptionV3()
    check_state_dict(state, net, path)
    full = {k: v.float() for k, v in state.items() if not _optional(k)}
    full.update({k: torch.zeros((), dtype=torch.long) for k in net.state_dict() if _optional(k)})
    net.load_state_dict(full, assign=True)
    return net.eval().requires_grad_(False)


@dataclass
class FeatureNetwork:
    """The loaded network with where its weights came from; called on uint8 batches it gives pool3 features and
    bias-free logits, both float32 on the CPU."""

    net: FIDInceptionV3
    path: Path
    sha256: str
    official: bool  # the weights are the registry's (pytorch-fid's) file, so scores compare with published ones
    device: torch.device

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = prepare(images.to(self.device)).contiguous(memory_format=torch.channels_last)
        features = self.net(x)
        return features.float().cpu(), self.net.logits(features).float().cpu()

    def describe(self) -> dict[str, object]:
        """Where the weights came from and how images are prepared, for manifests and cache keys."""
        return dict(name=FEATURE_NETWORK, path=str(self.path), sha256=self.sha256, official=self.official,
                    preprocessing=PREPROCESSING)


def load_inception(path: str | os.PathLike | None = None, *, device: str | torch.device = 'cpu',
                   progress: bool = True) -> FeatureNetwork:
    """The FID Inception network on `device`: from `path` if given, else the registry's file from the download
    cache (downloaded and checksummed the first time); a missing file is one line saying how to get it."""
    file = Path(path).expanduser() if path is not None else resolve_weights(progress=progress)
    if not file.is_file():
        raise StylelensError(f'--inception {file}: no such file (give the path of '
                             f'pt_inception-2015-12-05-6726825d.pth, or leave --inception out to use the download)')
    net = build_inception(file)
    torch_device = torch.device(device)
    net = net.to(torch_device, memory_format=torch.channels_last)
    sha = remembered_sha256(file)
    return FeatureNetwork(net, file, sha, sha == official_sha256(), torch_device)
