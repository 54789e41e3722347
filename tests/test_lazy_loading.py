"""Tests for lazy tensor loading (`load_snapshot(..., lazy_tensors=True)` and the public loaders built on it): same
tensors and same errors as an eager load, storages decoded only when used, no file left open or mapped."""
from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import stylelens
from conftest import tiny_snapshot, tiny_snapshot_path
from stylelens.errors import StylelensError
from stylelens.loading.records import LazyTensor, PersistentRecord
from stylelens.loading.safe_pickle import UnsafePickleError, load_snapshot
from stylelens.loading.snapshot_file import CorruptNetworkError, SnapshotFileError

FIXTURES = ['sg2_uncond64.pkl', 'sg2_uncond64.p3.pkl', 'sg2_cond32.pkl', 'sg2_cond32.np1.pkl', 'sg3_sg2_64.pkl']
RECORD_KEYS = ('G', 'D', 'G_ema', 'augment_pipe')
BIG = dict(channel_base=2048, channel_max=128)  # 128x128x3x3 float32 conv weights: 576 KiB payloads, left in the file
LEGACY_HEADER = b''.join(
    pickle.dumps(x, 2)
    for x in (0x1950A86A20F9469CFC6C, 1001, dict(protocol_version=1001, little_endian=True, type_sizes={'int': 4}))
)


def assert_same_tensor(lazy: torch.Tensor, eager: torch.Tensor) -> None:
    """Same class, dtype, layout, flags and bits."""
    assert type(lazy) is type(eager)
    assert (lazy.dtype, lazy.shape, lazy.stride(), lazy.storage_offset()) == (
        eager.dtype, eager.shape, eager.stride(), eager.storage_offset())
    assert lazy.requires_grad == eager.requires_grad
    assert torch.equal(lazy.detach().contiguous().flatten().view(torch.uint8),
                       eager.detach().contiguous().flatten().view(torch.uint8))


def assert_same_snapshot(lazy: dict, eager: dict) -> None:
    """Every record of a lazy load holds placeholders that materialize to the eager load's tensors."""
    assert set(lazy) == set(eager)
    for key in RECORD_KEYS:
        if not isinstance(eager.get(key), PersistentRecord):
            continue
        assert lazy[key].init_kwargs == eager[key].init_kwargs
        lazy_tensors, eager_tensors = lazy[key].state_dict(), eager[key].state_dict()
        assert list(lazy_tensors) == list(eager_tensors)
        for name, placeholder in lazy_tensors.items():
            assert isinstance(placeholder, LazyTensor) and placeholder.shape == eager_tensors[name].shape
            assert_same_tensor(placeholder.materialize(), eager_tensors[name])
            assert placeholder.materialize() is placeholder.materialize()


def error_of(call, *args, **kwargs) -> StylelensError:
    """The StylelensError that call(*args, **kwargs) raises (the test fails if it raises none)."""
    with pytest.raises(StylelensError) as exc_info:
        call(*args, **kwargs)
    return exc_info.value


def open_or_mapped(path: Path) -> list[str]:
    """The descriptors and memory mappings of this process that refer to `path` (Linux /proc)."""
    if not Path('/proc/self/maps').is_file():
        pytest.skip('needs /proc')
    target = os.path.realpath(path)
    fds = [fd for fd in os.listdir('/proc/self/fd') if os.path.realpath(f'/proc/self/fd/{fd}') == target]
    maps = [line for line in Path('/proc/self/maps').read_text().splitlines() if line.endswith(' ' + target)]
    return fds + maps


# --- same tensors as an eager load ----------------------------------------------------------------------------------


@pytest.mark.parametrize('name', FIXTURES)
def test_oracle_lazy_and_eager_loads_are_bit_identical(oracle_dir: Path, name: str) -> None:
    path = oracle_dir / name
    eager = load_snapshot(path)
    lazy = load_snapshot(path, lazy_tensors=True)
    assert lazy['training_set_kwargs'] == eager['training_set_kwargs']
    assert_same_snapshot(lazy, eager)
    assert not open_or_mapped(path)


def test_oracle_stream_lazy_load_is_bit_identical(oracle_dir: Path) -> None:
    path = oracle_dir / 'sg2_cond32.pkl'
    with open(path, 'rb') as f:
        lazy = load_snapshot(f, lazy_tensors=True)
    assert_same_snapshot(lazy, load_snapshot(path))


@pytest.mark.parametrize('name', ['sg2_uncond64.pkl', 'sg2_uncond64.p3.pkl'])
def test_oracle_public_loaders_match_eager_records(oracle_dir: Path, name: str) -> None:
    path = oracle_dir / name
    eager = load_snapshot(path)
    G = stylelens.load_generator(path)
    nets = stylelens.load_network(path)
    for key, module in [('G_ema', G), *((k, nets[k]) for k in ('G', 'D', 'G_ema'))]:
        expected = eager[key].state_dict()
        assert list(module.state_dict()) == list(expected)
        for tensor_name, tensor in module.state_dict().items():
            assert torch.equal(tensor, expected[tensor_name]) and tensor.dtype == expected[tensor_name].dtype
    pipe = nets['augment_pipe']
    assert isinstance(pipe, PersistentRecord) and pipe.class_name == 'AugmentPipe'
    pipe_tensors, eager_pipe = pipe.state_dict(), eager['augment_pipe'].state_dict()
    assert list(pipe_tensors) == list(eager_pipe)
    for tensor_name, tensor in pipe_tensors.items():
        assert_same_tensor(tensor, eager_pipe[tensor_name])
    assert nets['training_set_kwargs']['resolution'] == eager['training_set_kwargs']['resolution']


@pytest.mark.parametrize('protocol', [4, 3])
def test_big_tensors_lazy_and_eager_loads_are_bit_identical(tmp_path: Path, protocol: int) -> None:
    path = tiny_snapshot_path(tmp_path, protocol=protocol, **BIG)
    lazy = load_snapshot(path, lazy_tensors=True)
    assert not open_or_mapped(path)
    assert_same_snapshot(lazy, load_snapshot(path))


def test_big_bytes_outside_storages_stay_bytes(tmp_path: Path) -> None:
    class Storage:
        """Pickles as a storage record over `payload`; the same bytes object is also stored on its own."""

        def __init__(self, payload: bytes) -> None:
            self.payload = payload

        def __reduce__(self):
            return torch.storage._load_from_bytes, (self.payload,)

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # TypedStorage is deprecated, but it is what tensors pickle their data as
        _, (payload,) = torch.arange(40000, dtype=torch.float32).storage().__reduce__()
    path = tmp_path / 'shared.pkl'
    path.write_bytes(pickle.dumps({'storage': Storage(payload), 'again': payload, 'other': bytes(70000)}, 4))
    lazy, eager = load_snapshot(path, lazy_tensors=True), load_snapshot(path)
    for key in ('again', 'other'):
        assert type(lazy[key]) is bytes and lazy[key] == eager[key]


# --- storages decoded only when used --------------------------------------------------------------------------------


def malicious_snapshot(tmp_path: Path, marker: Path, pad: int) -> tuple[Path, dict]:
    """A snapshot whose D has one parameter with a storage payload that calls os.system (padded by `pad` bytes)."""

    class EvilStorage:
        """Pickles as a storage record whose payload calls os.system when unpickled."""

        def __reduce__(self):
            exploit = pickle.dumps(_SystemCall(f'touch {marker}' + ' ' * pad), 2)
            return torch.storage._load_from_bytes, (LEGACY_HEADER + exploit,)

    class EvilTensor:
        """Pickles as a tensor record of `shape` over an `EvilStorage`."""

        def __init__(self, shape: torch.Size) -> None:
            self.shape = tuple(shape)

        def __reduce__(self):
            stride = torch.empty(self.shape).stride()
            return torch._utils._rebuild_tensor_v2, (EvilStorage(), 0, self.shape, stride, False,
                                                     collections.OrderedDict())

    snapshot = tiny_snapshot(**BIG)
    module, name = snapshot['D'].b16.conv0, 'weight'
    module._parameters[name] = EvilTensor(module.weight.shape)
    return tiny_snapshot_path(tmp_path, snapshot=snapshot), snapshot


class _SystemCall:
    """Pickles as os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize('pad', [0, 1 << 17], ids=['small-payload', 'big-payload'])
def test_malicious_d_storage_is_only_refused_when_d_is_decoded(tmp_path: Path, pad: int) -> None:
    marker = tmp_path / 'pwned'
    path, snapshot = malicious_snapshot(tmp_path, marker, pad)

    eager_error = error_of(load_snapshot, path)
    assert isinstance(eager_error, UnsafePickleError)
    assert 'weights-only' in str(eager_error) and 'posix.system' in str(eager_error)

    lazy = load_snapshot(path, lazy_tensors=True)
    placeholder = lazy['D'].children()['b16'].children()['conv0'].parameters()['weight']
    assert isinstance(placeholder, LazyTensor)
    for _ in range(2):
        lazy_error = error_of(placeholder.materialize)
        assert type(lazy_error) is UnsafePickleError and str(lazy_error) == str(eager_error)

    G = stylelens.load_generator(path)
    expected = snapshot['G_ema'].state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in G.state_dict().items())
    network_error = error_of(stylelens.load_network, path)
    assert isinstance(network_error, UnsafePickleError) and 'posix.system' in str(network_error)
    assert '\n' not in str(network_error)
    assert not marker.exists()
    assert not open_or_mapped(path)


class _CutStorage:
    """Pickles as a storage record whose payload (a real legacy torch.save storage) is cut short."""

    def __reduce__(self):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            _, (payload,) = torch.zeros(4).storage().__reduce__()
        return torch.storage._load_from_bytes, (payload[:-8],)


def _tensor_record_pickle(storage: object, size: tuple[int, ...] = (4,)) -> bytes:
    """A pickle of {'t': a contiguous 1-d float tensor record of `size` over `storage`}."""

    class Record:
        """Pickles as the tensor record."""

        def __reduce__(self):
            stride = (1,)
            return torch._utils._rebuild_tensor_v2, (storage, 0, size, stride, False, collections.OrderedDict())

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # TypedStorage is deprecated, but it is what tensors pickle their data as
        return pickle.dumps({'t': Record()}, 4)


def test_corrupt_storage_is_reported_when_materialized(tmp_path: Path) -> None:
    path = tmp_path / 'bad-storage.pkl'
    path.write_bytes(_tensor_record_pickle(_CutStorage()))
    eager_error = error_of(load_snapshot, path)
    assert isinstance(eager_error, CorruptNetworkError) and 'tensor storage inside it is corrupt' in str(eager_error)
    lazy = load_snapshot(path, lazy_tensors=True)
    lazy_error = error_of(lazy['t'].materialize)
    assert type(lazy_error) is CorruptNetworkError and str(lazy_error) == str(eager_error)


def test_tensor_record_that_does_not_fit_is_reported_when_materialized(tmp_path: Path) -> None:
    path = tmp_path / 'negative-size.pkl'
    path.write_bytes(_tensor_record_pickle(torch.zeros(4)._typed_storage(), size=(-2,)))
    assert isinstance(error_of(load_snapshot, path), CorruptNetworkError)
    placeholder = load_snapshot(path, lazy_tensors=True)['t']
    error = error_of(placeholder.materialize)
    assert isinstance(error, CorruptNetworkError) and 'negative size' in str(error)
    assert str(path) in str(error) and '\n' not in str(error)


def test_placeholders_have_shapes_and_materialize_parameters(tmp_path: Path) -> None:
    path = tiny_snapshot_path(tmp_path)
    record = load_snapshot(path, lazy_tensors=True)['G_ema']
    weight = record.children()['mapping'].children()['fc0'].parameters()['weight']
    assert isinstance(weight, LazyTensor) and weight.shape == torch.Size([16, 16]) and '16, 16' in repr(weight)
    assert isinstance(weight.materialize(), torch.nn.Parameter)
    w_avg = record.children()['mapping'].buffers()['w_avg']
    assert type(w_avg.materialize()) is torch.Tensor


def test_file_replaced_after_a_lazy_load_is_not_read(tmp_path: Path) -> None:
    path = tiny_snapshot_path(tmp_path, **BIG)
    lazy = load_snapshot(path, lazy_tensors=True)
    tiny_snapshot_path(tmp_path, **BIG, seed=1)  # a different snapshot, written atomically over it
    conv = lazy['G_ema'].children()['synthesis'].children()['b16'].children()['conv0'].parameters()['weight']
    error = error_of(conv.materialize)
    assert isinstance(error, SnapshotFileError) and 'changed after it was loaded' in str(error)
    path.unlink()
    assert 'no such file' in str(error_of(conv.materialize))


# --- errors and file handling ---------------------------------------------------------------------------------------


def g_ema_payload_cuts(data: bytes) -> list[int]:
    """Cut points inside the first big and the first small tensor payload written for G_ema."""
    ops = list(pickletools.genops(data))
    start = next(pos for op, arg, pos in ops if arg == 'G_ema')
    payloads = [(pos, len(arg)) for op, arg, pos in ops if op.name in ('BINBYTES', 'BINBYTES8') and pos > start]
    big = next((pos, size) for pos, size in payloads if size >= 1 << 16)
    small = next((pos, size) for pos, size in payloads if size < 1 << 16)
    return [pos + 5 + size // 2 for pos, size in (big, small)]


@pytest.mark.parametrize('protocol', [4, 3])
def test_truncated_inside_g_ema_tensor_data(tmp_path: Path, protocol: int) -> None:
    data = tiny_snapshot_path(tmp_path, protocol=protocol, **BIG).read_bytes()
    path = tmp_path / 'cut.pkl'
    for cut in g_ema_payload_cuts(data):
        path.write_bytes(data[:cut])
        error = error_of(stylelens.load_generator, path)
        assert isinstance(error, CorruptNetworkError) and '\n' not in str(error)
        assert 'ends early: truncated or interrupted download?' in str(error)
        assert str(error_of(load_snapshot, path, lazy_tensors=True)) == str(error_of(load_snapshot, path))
        assert not open_or_mapped(path)


@pytest.mark.parametrize('protocol', [4, 3])
def test_truncation_anywhere_gives_the_eager_error(tmp_path: Path, protocol: int) -> None:
    data = tiny_snapshot_path(tmp_path, protocol=protocol, **BIG).read_bytes()
    path = tmp_path / 'cut.pkl'
    for cut in [*range(0, 400, 7), *np.linspace(400, len(data) - 1, 60).astype(int)]:
        path.write_bytes(data[:cut])
        lazy_error = error_of(load_snapshot, path, lazy_tensors=True)
        eager_error = error_of(load_snapshot, path)
        assert type(lazy_error) is type(eager_error) and str(lazy_error) == str(eager_error)
    assert not open_or_mapped(path)


def _torch_save_bytes(**kwargs) -> bytes:
    """A torch.save checkpoint of a big tensor, as bytes."""
    buffer = io.BytesIO()
    torch.save({'w': torch.ones(40000)}, buffer, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    'data',
    [
        b'',
        b'\x13' + bytes(4095),
        b'\x80\x04' + np.random.RandomState(1).bytes(4096),
        b'\x89PNG\r\n\x1a\n' + bytes(64),
        b'G_ema = Generator()\n',
        pickle.dumps({'G': 1}, 4) + b'junk',
        b'\x80\x03cos\nsystem\nX\x04\x00\x00\x00true\x85R.',
        _torch_save_bytes(),
        _torch_save_bytes(_use_new_zipfile_serialization=False),
    ],
    ids=['empty', 'not-a-pickle', 'random', 'png', 'text', 'trailing-junk', 'global', 'torch-zip', 'torch-legacy'],
)
def test_bad_files_give_the_eager_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / 'bad.pkl'
    path.write_bytes(data)
    lazy_error = error_of(load_snapshot, path, lazy_tensors=True)
    eager_error = error_of(load_snapshot, path)
    assert type(lazy_error) is type(eager_error) and str(lazy_error) == str(eager_error)
    assert not open_or_mapped(path)


def test_missing_file_lazily(tmp_path: Path) -> None:
    error = error_of(load_snapshot, tmp_path / 'nope.pkl', lazy_tensors=True)
    assert isinstance(error, SnapshotFileError) and 'no such file' in str(error)


def test_rebuilt_generator_owns_its_tensors(tmp_path: Path) -> None:
    path = tiny_snapshot_path(tmp_path, **BIG)
    G = stylelens.load_generator(path)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    assert not open_or_mapped(path)
    path.write_bytes(bytes(path.stat().st_size))  # overwritten in place: a mapping would now read zeros
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())


def test_oversized_tensor_view_is_refused(tmp_path):
    """torch does not bound-check views when rebuilding; the loader must, or it would read foreign memory."""
    class Oversized:
        def __reduce__(self):
            storage = torch.zeros(4).untyped_storage()
            typed = torch.storage.TypedStorage(wrap_storage=storage, dtype=torch.float32, _internal=True)
            return (torch._utils._rebuild_tensor_v2, (typed, 0, (8,), (1,), False, {}))

    path = tmp_path / 'oversized.pkl'
    path.write_bytes(pickle.dumps({'t': Oversized()}, protocol=4))
    with pytest.raises(CorruptNetworkError, match='past the end of its storage'):
        load_snapshot(path)
    with pytest.raises(CorruptNetworkError, match='past the end of its storage'):
        load_snapshot(path, lazy_tensors=True)['t'].materialize()
