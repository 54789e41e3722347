"""Tests for the restricted snapshot unpickler and the official-layout writer: real pickles, no mocks, offline."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import pickletools
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ORACLE_DIR
from stylelens.errors import StylelensError
from stylelens.loading.official_writer import dump_snapshot
from stylelens.loading.records import EasyDict, PersistentRecord
from stylelens.loading.safe_pickle import SAFE_GLOBALS, UnsafePickleError, load_snapshot
from stylelens.loading.snapshot_file import CorruptNetworkError, SnapshotFileError

FIXTURES = ['sg2_uncond64.pkl', 'sg2_uncond64.p3.pkl', 'sg2_cond32.pkl', 'sg2_cond32.np1.pkl', 'sg3_sg2_64.pkl']
SIBLINGS = [('sg2_uncond64.pkl', 'sg2_uncond64.p3.pkl'), ('sg2_cond32.pkl', 'sg2_cond32.np1.pkl')]
CLASS_NAMES = {'G': 'Generator', 'G_ema': 'Generator', 'D': 'Discriminator', 'augment_pipe': 'AugmentPipe'}
LEGACY_HEADER = b''.join(
    pickle.dumps(x, 2)
    for x in (0x1950A86A20F9469CFC6C, 1001, dict(protocol_version=1001, little_endian=True, type_sizes={'int': 4}))
)


def oracle(name: str) -> Path:
    """Path of an oracle fixture, skipping the test when the oracle directory is not available."""
    path = ORACLE_DIR / name
    if not path.is_file():
        pytest.skip(f'oracle fixture {path} not found (set STYLELENS_ORACLE_DIR to the oracle directory)')
    return path


def call_pickle(module: str, name: str, arg: object) -> bytes:
    """A pickle that calls the global module.name with one argument (a GLOBAL opcode, as hand-made exploits use)."""
    return (
        b'\x80\x03c' + f'{module}\n{name}\n'.encode() + pickle.dumps(arg, 3)[2:-1] + pickle.TUPLE1 + pickle.REDUCE
        + pickle.STOP
    )


def pickle_globals(data: bytes) -> set[str]:
    """Every global ('module name') referenced by a pickle, following STACK_GLOBAL arguments through the memo."""
    found, memo, pushed = set(), {}, []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'UNICODE'):
            pushed.append(arg)
        elif op.name in ('BINGET', 'LONG_BINGET', 'GET'):
            pushed.append(memo.get(arg))
        elif op.name == 'MEMOIZE':
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.name in ('BINPUT', 'LONG_BINPUT', 'PUT'):
            memo[arg] = pushed[-1] if pushed else None
        elif op.name == 'STACK_GLOBAL':
            found.add(f'{pushed[-2]} {pushed[-1]}')
            pushed.append(None)
        elif op.name in ('GLOBAL', 'INST'):
            found.add(arg)
            pushed.append(None)
        else:
            pushed.append(None)
    return found


def assert_one_line_error(exc_info: pytest.ExceptionInfo, *fragments: str) -> None:
    """The error is a StylelensError with a single-line message containing every fragment."""
    message = str(exc_info.value)
    assert isinstance(exc_info.value, StylelensError)
    assert '\n' not in message
    for fragment in fragments:
        assert fragment in message


# --- the official fixtures ---------------------------------------------------------------------------------


@pytest.mark.parametrize('name', FIXTURES)
def test_oracle_fixture_loads(name: str) -> None:
    snapshot = load_snapshot(oracle(name))
    meta = json.loads(oracle(name.split('.')[0] + '.json').read_text())
    assert set(snapshot) == {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}
    assert {k: snapshot[k].class_name for k in CLASS_NAMES} == CLASS_NAMES
    resolution = snapshot['training_set_kwargs']['resolution']
    assert type(resolution) is np.int64 and resolution == meta['training_set_kwargs']['resolution']
    tensors = snapshot['G_ema'].state_dict()
    assert [[k, list(v.shape)] for k, v in tensors.items()] == [[k, s] for k, s, _ in meta['G_ema_state_dict']]
    assert [[k, list(v.shape)] for k, v in snapshot['D'].state_dict().items()] == [
        [k, s] for k, s, _ in meta['D_state_dict']
    ]
    assert snapshot['G'].init_kwargs == meta['G_init_kwargs']
    assert snapshot['D'].init_kwargs == meta['D_init_kwargs']
    assert isinstance(snapshot['G'].state['_init_kwargs']['mapping_kwargs'], EasyDict)


def test_oracle_records_keep_no_source() -> None:
    record = load_snapshot(oracle('sg2_cond32.pkl'))['G_ema']
    stub = 'raise RuntimeError("stylelens oracle: embedded source must never be executed")\n'
    assert record.module_src_sha256 == hashlib.sha256(stub.encode()).hexdigest()
    assert all('stylelens oracle' not in repr(v) for v in vars(record).values() if isinstance(v, str))
    assert record.children()['mapping'].class_name == 'MappingNetwork'


@pytest.mark.parametrize(('reference', 'variant'), SIBLINGS)
def test_protocol3_and_numpy1_variants_match(reference: str, variant: str) -> None:
    a, b = load_snapshot(oracle(reference)), load_snapshot(oracle(variant))
    assert a['training_set_kwargs'] == b['training_set_kwargs']
    for key in CLASS_NAMES:
        ta, tb = a[key].state_dict(), b[key].state_dict()
        assert list(ta) == list(tb)
        assert all(ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]) for k in ta)
        assert a[key].init_kwargs == b[key].init_kwargs


def test_load_from_open_stream() -> None:
    with open(oracle('sg2_cond32.pkl'), 'rb') as f:
        assert load_snapshot(f)['G_ema'].class_name == 'Generator'


# --- refusing code ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('module', 'name', 'make_arg'),
    [
        ('os', 'system', lambda p: f'touch {p}'),
        ('posix', 'system', lambda p: f'touch {p}'),
        ('builtins', 'eval', lambda p: f"open({str(p)!r}, 'w').close()"),
        ('builtins', 'exec', lambda p: f"open({str(p)!r}, 'w').close()"),
        ('subprocess', 'Popen', lambda p: ['touch', str(p)]),
    ],
)
def test_malicious_global_is_refused_without_side_effect(tmp_path: Path, module: str, name: str, make_arg) -> None:
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pkl'
    path.write_bytes(call_pickle(module, name, make_arg(marker)))
    with pytest.raises(UnsafePickleError) as exc_info:
        load_snapshot(path)
    assert_one_line_error(exc_info, f'global {module}.{name}', 'not executed', str(path))
    assert not marker.exists()


class _Exploit:
    """Pickles as a call to `func(arg)`, the classic pickle exploit."""

    def __init__(self, func, arg) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def test_malicious_object_inside_a_snapshot_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pkl'
    dump_snapshot({'G': tiny_network(), 'extra': [_Exploit(eval, f"open({str(marker)!r}, 'w').close()")]}, path)
    with pytest.raises(UnsafePickleError) as exc_info:
        load_snapshot(path)
    assert_one_line_error(exc_info, 'global builtins.eval')
    assert not marker.exists()


def test_malicious_storage_payload_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / 'pwned'
    payload = LEGACY_HEADER + pickle.dumps(_Exploit(os.system, f'touch {marker}'), 2)
    path = tmp_path / 'evil.pkl'
    path.write_bytes(call_pickle('torch.storage', '_load_from_bytes', payload))
    with pytest.raises(UnsafePickleError) as exc_info:
        load_snapshot(path)
    assert_one_line_error(exc_info, 'weights-only', 'posix.system')
    assert not marker.exists()


def test_embedded_module_source_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / 'pwned'
    source = f"open({str(marker)!r}, 'w').close()\n"
    path = tmp_path / 'net.pkl'
    dump_snapshot({'G': tiny_network()}, path, module_src=source)
    record = load_snapshot(path)['G']
    assert not marker.exists()
    assert record.class_name == 'Tiny'
    assert record.module_src_sha256 == hashlib.sha256(source.encode()).hexdigest()


@pytest.mark.parametrize(
    ('meta', 'fragment'),
    [
        (dict(type='class', version=5, module_src='', class_name='X', state={}), 'version 5'),
        (dict(type='function', version=6, module_src='', class_name='X', state={}), "type 'function'"),
        (dict(type='class', version=6, module_src='', class_name='os.system', state={}), 'invalid class name'),
    ],
)
def test_unsupported_persistent_records_are_refused(tmp_path: Path, meta: dict, fragment: str) -> None:
    path = tmp_path / 'odd.pkl'
    path.write_bytes(call_pickle('torch_utils.persistence', '_reconstruct_persistent_obj', meta))
    with pytest.raises(CorruptNetworkError) as exc_info:
        load_snapshot(path)
    assert_one_line_error(exc_info, fragment)


def test_build_on_non_dtype_and_persistent_ids_are_refused(tmp_path: Path) -> None:
    build = b'\x80\x03ccollections\nOrderedDict\n)R' + pickle.dumps({'x': 1}, 3)[2:-1] + pickle.BUILD + pickle.STOP
    persistent = b'\x80\x03' + pickle.dumps('storage-0', 3)[2:-1] + pickle.BINPERSID + pickle.STOP
    for data, fragment in ((build, 'BUILD'), (persistent, 'persistent id')):
        with pytest.raises(UnsafePickleError) as exc_info:
            load_snapshot(io.BytesIO(data))
        assert_one_line_error(exc_info, fragment)


# --- files that are not (whole) snapshots -------------------------------------------------------------------


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as z:
        z.writestr('archive/data.pkl', b'not a snapshot')
    return buffer.getvalue()


def _torch_save_bytes(**kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save({'w': torch.ones(3)}, buffer, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ('make_bytes', 'fragment'),
    [
        (lambda: b'', 'empty'),
        (lambda: bytes([0x13]) + np.random.RandomState(0).bytes(4095), 'not a pickle'),
        (lambda: b'\x80\x04' + np.random.RandomState(1).bytes(4096), 'corrupt'),
        (lambda: b'\x89PNG\r\n\x1a\n' + bytes(64), 'PNG image'),
        (lambda: b'G_ema = Generator()\nthis is a text file\n', 'not a pickle'),
        (_zip_bytes, 'torch.save zip checkpoint'),
        (_torch_save_bytes, 'torch.save zip checkpoint'),
        (lambda: _torch_save_bytes(_use_new_zipfile_serialization=False), 'legacy torch.save'),
        (lambda: pickle.dumps({'G': 1}, 4) + b'junk', 'unexpected bytes'),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path: Path, make_bytes, fragment: str) -> None:
    path = tmp_path / 'bad.pkl'
    path.write_bytes(make_bytes())
    with pytest.raises(CorruptNetworkError) as exc_info:
        load_snapshot(path)
    assert_one_line_error(exc_info, fragment, str(path))


@pytest.mark.parametrize('name', ['sg2_uncond64.pkl', 'sg2_uncond64.p3.pkl'])
def test_truncated_pickle(tmp_path: Path, name: str) -> None:
    data = oracle(name).read_bytes()
    path = tmp_path / 'cut.pkl'
    for cut in (len(data) // 2, len(data) - 1, 100):
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptNetworkError) as exc_info:
            load_snapshot(path)
        assert_one_line_error(exc_info, 'ends early: truncated or interrupted download?')


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SnapshotFileError) as exc_info:
        load_snapshot(tmp_path / 'nope.pkl')
    assert_one_line_error(exc_info, 'no such file')


# --- writing ----------------------------------------------------------------------------------------------


class Tiny(torch.nn.Module):
    """A small network shaped like an official persistent module: init args recorded, a child, buffers."""

    def __init__(self, width: int, mapping_kwargs: dict) -> None:
        super().__init__()
        self._init_args = (width,)
        self._init_kwargs = dict(mapping_kwargs=mapping_kwargs)
        self.fc = torch.nn.Linear(width, 3)
        self.fc._init_args, self.fc._init_kwargs = (width, 3), {}
        self.register_buffer('w_avg', torch.randn(width, generator=torch.Generator().manual_seed(0)))
        self.register_buffer('scratch', torch.zeros(2), persistent=False)
        self.gain = np.float64(0.5)


def tiny_network() -> Tiny:
    torch.manual_seed(0)
    return Tiny(4, {'num_layers': 2, 'nested': {'lr': 0.01}})


@pytest.mark.parametrize('protocol', [4, 3])
def test_round_trip(tmp_path: Path, protocol: int) -> None:
    net = tiny_network()
    path = tmp_path / 'tiny.pkl'
    modules_before = set(sys.modules)
    dump_snapshot({'G_ema': net, 'training_set_kwargs': {'resolution': np.int64(8)}}, path, protocol=protocol)
    assert not {'dnnlib', 'dnnlib.util', 'torch_utils', 'torch_utils.persistence'} & (set(sys.modules) - modules_before)
    assert os.listdir(tmp_path) == ['tiny.pkl']

    snapshot = load_snapshot(path)
    record = snapshot['G_ema']
    assert isinstance(record, PersistentRecord) and record.class_name == 'Tiny'
    assert record.children()['fc'].class_name == 'Linear' and record.children()['fc'].init_args == (4, 3)
    assert record.init_args == (4,)
    assert record.init_kwargs == {'mapping_kwargs': {'num_layers': 2, 'nested': {'lr': 0.01}}}
    kwargs = record.state['_init_kwargs']
    assert type(kwargs) is dict and isinstance(kwargs['mapping_kwargs'], EasyDict)
    assert kwargs['mapping_kwargs'].nested.lr == 0.01
    assert type(record.state['gain']) is np.float64 and record.state['gain'] == 0.5
    assert 'scratch' in record.buffers()
    expected, loaded = net.state_dict(), record.state_dict()
    assert list(loaded) == list(expected) == ['w_avg', 'fc.weight', 'fc.bias']
    assert all(loaded[k].dtype == expected[k].dtype and torch.equal(loaded[k], expected[k]) for k in expected)
    assert isinstance(record.children()['fc'].parameters()['weight'], torch.nn.Parameter)

    written = pickle_globals(path.read_bytes())
    assert written <= {f'{m} {n}' for m, n in SAFE_GLOBALS}
    assert {'torch_utils.persistence _reconstruct_persistent_obj', 'dnnlib.util EasyDict'} <= written


def test_plain_dict_kwargs_and_stream_output() -> None:
    buffer = io.BytesIO()
    dump_snapshot({'G': tiny_network()}, buffer, easydict_kwargs=False)
    record = load_snapshot(io.BytesIO(buffer.getvalue()))['G']
    assert type(record.state['_init_kwargs']['mapping_kwargs']) is dict
    assert 'dnnlib.util EasyDict' not in pickle_globals(buffer.getvalue())


def test_writer_rejects_modules_without_init_args(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match='_init_args'):
        dump_snapshot({'G': torch.nn.Linear(2, 2)}, tmp_path / 'x.pkl')
    assert os.listdir(tmp_path) == []

