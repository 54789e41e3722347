"""The TorchScript tensor reader on archives the tests build with `torch.jit.save` (never `torch.jit.load`), hostile
archives refused before anything runs, and NVIDIA's VGG16 layout mapped onto our own feature network."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from stylelens.errors import StylelensError
from stylelens.loading.torchscript_weights import read_torchscript_tensors
from stylelens.projection.perceptual import STAGES, PerceptualDistance, VGG16Features
from stylelens.projection.vgg_weights import archive_names, features_from_tensors, load_vgg16

pytestmark = pytest.mark.filterwarnings('ignore:`torch.jit.:DeprecationWarning')


class Inner(torch.nn.Module):
    """A sub-module with a convolution and an integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3)
        self.register_buffer('steps', torch.arange(5, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)


class Small(torch.nn.Module):
    """Nested modules, a parameter, a half-precision buffer and a buffer that is a view of a parameter's storage."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = Inner()
        self.lpips0 = torch.nn.Parameter(torch.rand(4, 1, 1))
        self.register_buffer('mean', torch.randn(3).half())
        self.register_buffer('first_row', self.layers.conv1.weight.data[0])

    def forward(self, x: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        return self.layers(x) * self.lpips0.sum()


class Layers(torch.nn.Module):
    """VGG16's 13 convolutions named as in NVIDIA's vgg16.pt (layers.conv1 ... layers.conv13)."""

    def __init__(self) -> None:
        super().__init__()
        channels, index = 3, 1
        for count, out in STAGES:
            for _ in range(count):
                setattr(self, f'conv{index}', torch.nn.Conv2d(channels, out, 3, padding=1))
                channels, index = out, index + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)


class NvidiaLayoutVGG(torch.nn.Module):
    """A module with the tensor names and shapes of NVIDIA's vgg16.pt (classifier left out), seeded He-scaled
    weights and positive LPIPS weights [C, 1, 1]."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.layers = Layers()
        with torch.no_grad():
            for name, param in self.layers.named_parameters():
                scale = (2 / param[0].numel()) ** 0.5 if name.endswith('weight') else 0.1
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
        for index, (_, out) in enumerate(STAGES):
            setattr(self, f'lpips{index}', torch.nn.Parameter(torch.rand(out, 1, 1, generator=gen)))

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        return self.layers(img)


def save_vgg_archive(path: Path, seed: int = 0) -> tuple[Path, dict[str, torch.Tensor]]:
    """A TorchScript archive in NVIDIA's VGG16 layout and the state dict it was saved from."""
    module = NvidiaLayoutVGG(seed)
    torch.jit.save(torch.jit.script(module), str(path))
    return path, {k: v.detach().clone() for k, v in module.state_dict().items()}


def replace_member(archive: Path, out: Path, name_suffix: str, data: bytes) -> Path:
    """A copy of `archive` with the member ending in `name_suffix` replaced by `data`."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, 'w') as dst:
        for info in src.infolist():
            dst.writestr(info.filename, data if info.filename.endswith(name_suffix) else src.read(info))
    return out


@pytest.fixture(scope='module')
def vgg_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    return save_vgg_archive(tmp_path_factory.mktemp('vgg') / 'vgg16.pt')


@pytest.fixture(scope='module')
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    module = Small()
    path = tmp_path_factory.mktemp('ts') / 'small.pt'
    torch.jit.save(torch.jit.script(module), str(path))
    return path, {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_reads_every_tensor_of_a_scripted_module_exactly(small_archive: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = small_archive
    tensors = read_torchscript_tensors(path)
    assert set(tensors) == set(state)
    for name, value in state.items():
        assert tensors[name].dtype == value.dtype and torch.equal(tensors[name], value), name
    assert tensors['layers.steps'].dtype == torch.int64 and tensors['mean'].dtype == torch.float16


def test_archive_naming_a_forbidden_global_is_refused_and_nothing_runs(
        small_archive: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    marker = tmp_path / 'ran'
    evil = pickle.dumps(None, 2)[:2] + b'cos\nsystem\n' + pickle.dumps(f'touch {marker}', 2)[2:-1] + b'\x85R.'
    archive = replace_member(small_archive[0], tmp_path / 'evil.pt', '/data.pkl', evil)
    with pytest.raises(StylelensError) as caught:
        read_torchscript_tensors(archive)
    message = str(caught.value)
    assert '\n' not in message and 'os.system' in message and 'not executed' in message and str(archive) in message
    assert not marker.exists()


@pytest.mark.parametrize('payload, expected', [
    (b'\x80\x02ccollections\nOrderedDict\n)\x81}b.', 'construct a OrderedDict'),   # NEWOBJ of a non-module
    (b'\x80\x02c__torch__\nM\n)\x81]b.', 'not a dict of attributes'),               # BUILD with a list state
    (b'\x80\x02(X\x07\x00\x00\x00storageq\x00ctorch\nFloatStorage\nX\x01\x00\x00\x009X\x03\x00\x00\x00cpuK\x04tQ.',
     'no storage record'),
    (b'\x80\x02ctorch\nFloatStorage\n.', 'holds a dtype, not a scripted module'),
])
def test_malformed_archives_get_one_line(small_archive: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path,
                                         payload: bytes, expected: str) -> None:
    archive = replace_member(small_archive[0], tmp_path / 'bad.pt', '/data.pkl', payload)
    with pytest.raises(StylelensError, match=expected) as caught:
        read_torchscript_tensors(archive)
    assert '\n' not in str(caught.value)


def test_storage_of_the_wrong_size_and_non_archives_are_refused(
        small_archive: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    short = replace_member(small_archive[0], tmp_path / 'short.pt', '/data/0', b'\x00' * 3)
    with pytest.raises(StylelensError, match='bytes, not the'):
        read_torchscript_tensors(short)
    text = tmp_path / 'notes.pt'
    text.write_text('hello')
    with pytest.raises(StylelensError, match='not a TorchScript archive'):
        read_torchscript_tensors(text)
    plain_zip = tmp_path / 'plain.pt'
    with zipfile.ZipFile(plain_zip, 'w') as archive:
        archive.writestr('readme.txt', 'no pickle here')
    with pytest.raises(StylelensError, match='no NAME/data.pkl'):
        read_torchscript_tensors(plain_zip)


def test_nvidia_layout_maps_onto_our_vgg16(vgg_archive: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = vgg_archive
    model = load_vgg16(path)
    ours = model.state_dict()
    for mine, theirs in archive_names().items():
        assert torch.equal(ours[mine], state[theirs].reshape(ours[mine].shape)), mine
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    outputs = model(x)
    assert [o.shape[1] for o in outputs] == [c for _, c in STAGES]
    assert [o.shape[2] for o in outputs] == [32, 16, 8, 4, 2]


def lpips_by_definition(model: VGG16Features, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS written out term by term: unit-normalise per position, weight channels, sum, average positions."""
    total = torch.zeros(a.shape[0])
    for fa, fb, w in zip(model(a), model(b), model.lpips_weights()):
        na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total += ((na - nb) ** 2 * w.reshape(1, -1, 1, 1)).sum(1).mean((1, 2))
    return total


def test_embedding_distance_is_lpips(vgg_archive: tuple[Path, dict[str, torch.Tensor]]) -> None:
    model = load_vgg16(vgg_archive[0])
    gen = torch.Generator().manual_seed(1)
    a, b = (torch.rand(2, 3, 48, 48, generator=gen) * 2 - 1 for _ in range(2))
    lpips = PerceptualDistance(model, learned=True)
    assert torch.allclose(lpips(a, b), lpips_by_definition(model, a, b), rtol=1e-4, atol=1e-6)
    assert torch.allclose(lpips(a, a), torch.zeros(2), atol=1e-6)
    plain = PerceptualDistance(model, learned=False)
    unweighted = VGG16Features()
    unweighted.load_state_dict({k: (torch.ones_like(v) if k.startswith('lpips') else v)
                                for k, v in model.state_dict().items()})
    assert torch.allclose(plain(a, b), lpips_by_definition(unweighted, a, b), rtol=1e-4, atol=1e-6)
    gray = a[:, :1]
    assert torch.allclose(lpips.embed(gray), lpips.embed(gray.repeat(1, 3, 1, 1)))


def test_wrong_archive_contents_are_refused_in_one_line(vgg_archive: tuple[Path, dict[str, torch.Tensor]]) -> None:
    state = vgg_archive[1]
    missing = {k: v for k, v in state.items() if k != 'layers.conv7.weight'}
    with pytest.raises(StylelensError, match="is not NVIDIA's VGG16 LPIPS archive: it lacks layers.conv7.weight"):
        features_from_tensors(missing, 'x.pt')
    wrong = dict(state, **{'layers.conv2.weight': torch.zeros(64, 64, 1, 1)})
    with pytest.raises(StylelensError, match=r'layers.conv2.weight has shape \[64, 64, 1, 1\], expected'):
        features_from_tensors(wrong, 'x.pt')
    negative = dict(state, lpips1=-state['lpips1'])
    with pytest.raises(StylelensError, match='negative LPIPS weights'):
        features_from_tensors(negative, 'x.pt')
