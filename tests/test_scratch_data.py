"""The from-scratch GANs' data layer: CIFAR-10 (shared real subset), IDX files and image folders written here,
the `data` verbs through the real console script, and downloads from a local HTTP server (offline)."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import tarfile
import threading
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import cifar_subset
from stylelens import datasets as sd
from stylelens.cli import COMMANDS
from stylelens.cli.data import data as data_group
from stylelens.datasets import CIFAR10_CLASSES, DatasetSource, RemoteFile, file_md5, load_dataset, parse_data_spec
from stylelens.errors import StylelensError
from stylelens.loading.safe_pickle import UnsafePickleError

SUBSET_IMAGES_PER_BATCH = 1017


@pytest.fixture(scope='module')
def subset() -> Path:
    """The shared CIFAR-10 subset tarball; skip if absent."""
    return cifar_subset()


@pytest.fixture(scope='module')
def extracted(subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The subset's regular files written out under a temporary folder (which then holds cifar-10-batches-py/)."""
    root = tmp_path_factory.mktemp('cifar')
    with tarfile.open(subset) as tar:
        for member in (m for m in tar if m.isfile()):
            target = root.joinpath(*PurePosixPath(member.name).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return root


@pytest.fixture(scope='module')
def train(subset: Path) -> sd.ImageDataset:
    return load_dataset(f'cifar10:{subset}')


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('STYLELENS_CACHE', str(tmp_path / 'cache'))


# ------------------------------------------------------------------------------------------------ CIFAR-10

def test_tarball_and_extracted_folder_agree(train, extracted):
    for path in (extracted, extracted / 'cifar-10-batches-py'):
        other = load_dataset(f'cifar10:{path}')
        assert torch.equal(other.pixels, train.pixels) and torch.equal(other.labels, train.labels)


def test_cifar_subset_sizes_and_layout(train, subset):
    test = load_dataset(f'cifar10:{subset}', split='test')
    assert len(train) == 5 * SUBSET_IMAGES_PER_BATCH and len(test) == SUBSET_IMAGES_PER_BATCH
    assert train.pixels.shape == (len(train), 3, 32, 32) and train.pixels.dtype == torch.uint8
    assert (train.resolution, train.channels, train.num_classes) == (32, 3, 10)
    assert train.class_names == CIFAR10_CLASSES and set(train.labels.tolist()) == set(range(10))


def test_images_are_float_in_minus_one_to_one(train):
    images = train.images
    assert images.dtype == torch.float32 and images.shape == train.pixels.shape
    assert images.min() == -1 and images.max() == 1
    image, label = train[7]
    assert torch.equal(image, images[7]) and label.dtype == torch.int64 and label == train.labels[7]


def test_class_filter_keeps_only_dogs(train, subset):
    dogs = load_dataset(f'cifar10:{subset}:dog')
    assert set(dogs.labels.tolist()) == {5} and 400 <= len(dogs) <= 600
    assert len(dogs) == int((train.labels == 5).sum()) and dogs.class_counts() == {'dog': len(dogs)}
    assert torch.equal(load_dataset(f'cifar10:{subset}:DOG').pixels, dogs.pixels)
    assert torch.equal(load_dataset(f'cifar10:{subset}:5').pixels, dogs.pixels)
    assert set(load_dataset(f'cifar10:{subset}:cat,5').labels.tolist()) == {3, 5}


@pytest.mark.parametrize('resolution, channels', [(64, None), (28, None), (28, 1)])
def test_resize_and_channels(subset, resolution, channels):
    dogs = load_dataset(f'cifar10:{subset}:dog')
    resized = load_dataset(f'cifar10:{subset}:dog', resolution=resolution, channels=channels)
    assert resized.pixels.shape == (len(dogs), channels or 3, resolution, resolution)
    assert (resized.resolution, resized.channels) == (resolution, channels or 3)
    assert abs(resized.images.mean() - dogs.images.mean()) < 0.02  # resampling keeps the overall brightness


def _cifar_tarball(path: Path, batches: dict[str, bytes]) -> Path:
    """A .tar.gz with the official member layout holding the given batch payloads."""
    with tarfile.open(path, 'w:gz') as tar:
        for name, payload in batches.items():
            info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def _batch(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return pickle.dumps({b'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b'labels': list(range(n))}, protocol=4)


class _MakesADirectory:
    """Unpickling this would create a directory: the side effect the restricted unpickler must prevent."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_malicious_pickle_in_tarball_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / 'pwned'
    evil = pickle.dumps({b'data': _MakesADirectory(marker), b'labels': []}, protocol=4)
    batches = {'data_batch_1': evil, **{f'data_batch_{i}': _batch(2) for i in range(2, 6)}}
    tarball = _cifar_tarball(tmp_path / 'fake.tar.gz', batches)
    with pytest.raises(UnsafePickleError, match='refused global .*mkdir'):
        load_dataset(f'cifar10:{tarball}')
    assert not marker.exists()


def test_damaged_or_incomplete_cifar_is_a_clear_error(tmp_path):
    wrong = pickle.dumps({b'data': np.zeros((2, 10), np.uint8), b'labels': [0, 1]}, protocol=4)
    tarball = _cifar_tarball(tmp_path / 'wrong.tar.gz', {f'data_batch_{i}': wrong for i in range(1, 6)})
    with pytest.raises(StylelensError, match=r"data_batch_1 is not a CIFAR-10 batch: 'data' must be"):
        load_dataset(f'cifar10:{tarball}')
    partial = _cifar_tarball(tmp_path / 'partial.tar.gz', {'data_batch_1': _batch(2)})
    with pytest.raises(StylelensError, match='lacks cifar-10-batches-py/data_batch_2, data_batch_3'):
        load_dataset(f'cifar10:{partial}')
    (tmp_path / 'junk.tar.gz').write_bytes(b'\x1f\x8b not really gzip')
    with pytest.raises(StylelensError, match='cannot read .*junk.tar.gz as a CIFAR-10 tar archive'):
        load_dataset(f"cifar10:{tmp_path / 'junk.tar.gz'}")


# ------------------------------------------------------------------------------------------------ IDX

def _idx(magic: int, array: np.ndarray) -> bytes:
    return struct.pack(f'>{1 + array.ndim}I', magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write_idx_folder(folder: Path, n_train: int = 12, n_test: int = 5, side: int = 6) -> dict[str, np.ndarray]:
    """Train files gzipped, test files plain, as the official names; returns the arrays written."""
    rng = np.random.default_rng(1)
    arrays = {'train-images': rng.integers(0, 256, (n_train, side, side)), 'train-labels': np.arange(n_train) % 10,
              't10k-images': rng.integers(0, 256, (n_test, side, side)), 't10k-labels': np.arange(n_test)[::-1]}
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        kind, magic = ('idx3', sd.IDX_IMAGES_MAGIC) if stem.endswith('images') else ('idx1', sd.IDX_LABELS_MAGIC)
        payload = _idx(magic, array)
        if stem.startswith('train'):
            (folder / f'{stem}-{kind}-ubyte.gz').write_bytes(gzip.compress(payload))
        else:
            (folder / f'{stem}-{kind}-ubyte').write_bytes(payload)
    return arrays


def test_idx_reading_gz_and_plain(tmp_path):
    arrays = _write_idx_folder(tmp_path / 'mnist')
    for split, prefix in (('train', 'train'), ('test', 't10k')):
        ds = load_dataset(f"mnist:{tmp_path / 'mnist'}", split=split)
        assert ds.pixels.shape == (len(arrays[f'{prefix}-images']), 1, 6, 6) and ds.channels == 1
        assert np.array_equal(ds.pixels[:, 0].numpy(), arrays[f'{prefix}-images'])
        assert np.array_equal(ds.labels.numpy(), arrays[f'{prefix}-labels'])
    threes = load_dataset(f"mnist:{tmp_path / 'mnist'}:3,5", resolution=28, channels=3)
    assert set(threes.labels.tolist()) == {3, 5} and threes.pixels.shape[1:] == (3, 28, 28)
    boots = load_dataset(f"fashion-mnist:{tmp_path / 'mnist'}:Ankle boot")
    assert set(boots.labels.tolist()) == {9} and boots.class_names[9] == 'ankle-boot'


def test_idx_bad_magic_truncation_and_mismatch(tmp_path):
    folder = tmp_path / 'bad'
    _write_idx_folder(folder)
    labels = (folder / 'train-labels-idx1-ubyte.gz').read_bytes()
    (folder / 'train-images-idx3-ubyte.gz').write_bytes(labels)
    with pytest.raises(StylelensError, match='not an IDX image file: magic number 0x00000801, expected 0x00000803'):
        load_dataset(f'mnist:{folder}')
    (folder / 'train-images-idx3-ubyte.gz').unlink()
    (folder / 'train-images-idx3-ubyte').write_bytes(_idx(sd.IDX_IMAGES_MAGIC, np.zeros((12, 6, 6)))[:-7])
    with pytest.raises(StylelensError, match=r'holds 425 data bytes but its header promises 12 x 6 x 6 = 432'):
        load_dataset(f'mnist:{folder}')
    (folder / 'train-images-idx3-ubyte').write_bytes(_idx(sd.IDX_IMAGES_MAGIC, np.zeros((11, 6, 6))))
    with pytest.raises(StylelensError, match='has 11 images but train-labels-idx1-ubyte.gz has 12 labels'):
        load_dataset(f'mnist:{folder}')
    with pytest.raises(StylelensError, match='has no t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz'):
        load_dataset(f'mnist:{tmp_path}', split='test')


# ------------------------------------------------------------------------------------------------ folders

def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def test_folder_reader(tmp_path):
    rng = np.random.default_rng(2)
    _save(tmp_path / 'imgs' / 'b.png', rng.integers(0, 256, (8, 8, 3)))
    _save(tmp_path / 'imgs' / 'a' / 'z.png', np.full((8, 12, 3), 200))  # non-square: center-cropped to 8x8
    _save(tmp_path / 'imgs' / 'c.JPG', rng.integers(0, 256, (8, 8, 3)))
    _save(tmp_path / 'imgs' / 'd.png', np.zeros((8, 8)))  # grayscale among RGB: becomes RGB
    (tmp_path / 'imgs' / 'notes.txt').write_text('not an image')
    ds = load_dataset(f"folder:{tmp_path / 'imgs'}")
    assert ds.pixels.shape == (4, 3, 8, 8) and ds.num_classes == 0 and ds.labels.tolist() == [-1] * 4
    assert ds.pixels[0].eq(200).all() and ds.pixels[3].eq(0).all()  # sorted: a/z.png, b.png, c.JPG, d.png
    assert load_dataset(f"folder:{tmp_path / 'imgs'}", resolution=4, channels=1).pixels.shape == (4, 1, 4, 4)
    _save(tmp_path / 'gray' / 'x.png', np.zeros((5, 5)))
    assert load_dataset(f"folder:{tmp_path / 'gray'}").channels == 1
    _save(tmp_path / 'imgs' / 'big.png', np.zeros((16, 16, 3)))
    with pytest.raises(StylelensError, match=r'different sizes \(8x8, 16x16 after a square crop\): pass a resolution'):
        load_dataset(f"folder:{tmp_path / 'imgs'}")
    (tmp_path / 'empty').mkdir()
    with pytest.raises(StylelensError, match='no .png/.jpg/.jpeg images under'):
        load_dataset(f"folder:{tmp_path / 'empty'}")


# ------------------------------------------------------------------------------------------------ specs and options

def test_spec_parsing():
    assert parse_data_spec('CIFAR10:~/c.tar.gz:Dog,airplane') == sd.DataSpec('cifar10', Path.home() / 'c.tar.gz',
                                                                             (0, 5))
    assert parse_data_spec('fashion-mnist:f:T-shirt/top,ankle_boot').classes == (0, 9)
    assert parse_data_spec('mnist:m:3,5').classes == (3, 5)
    assert parse_data_spec('folder:a:b').path == Path('a:b')


@pytest.mark.parametrize('spec, message', [
    ('imagenet:x', re.escape('expected KIND:PATH[:CLASSES] with KIND one of cifar10, mnist, fashion-mnist, folder')),
    ('cifar10', 'expected KIND:PATH'),
    ('cifar10:', 'PATH is empty'),
    ('cifar10:x:wolf', "unknown class 'wolf' for cifar10; valid: airplane, automobile, bird, .*truck"),
    ('mnist:x:10', r"unknown class '10' for mnist; valid: 0, 1, .*9 \(or indices 0-9\)"),
    ('fashion-mnist:x:boot', "unknown class 'boot' for fashion-mnist; valid: t-shirt/top, .*ankle-boot"),
    ('mnist:x:3,,5', "empty class in '3,,5'"),
])
def test_bad_specs_name_the_choices(spec, message):
    with pytest.raises(StylelensError, match=message):
        parse_data_spec(spec)


@pytest.mark.parametrize('kwargs, message', [
    (dict(split='val'), "unknown split 'val' for cifar10; valid: train, test"),
    (dict(channels=2), 'unknown channel count 2; valid: 1 .*3'),
    (dict(resolution=2), 'bad resolution 2; valid: an integer from 4 to 1024'),
])
def test_bad_options_name_the_choices(subset, kwargs, message):
    with pytest.raises(StylelensError, match=message):
        load_dataset(f'cifar10:{subset}', **kwargs)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(StylelensError, match='does not exist: give cifar-10-python.tar.gz or the folder'):
        load_dataset(f"cifar10:{tmp_path / 'nope.tar.gz'}")


# ------------------------------------------------------------------------------------------------ CLI

def _data_command(*args: str) -> list[str]:
    """`stylelens data ...` once the verb is registered; until then the group itself, run the same way."""
    if 'data' in COMMANDS:
        return ['stylelens', 'data', *args]
    return [sys.executable, '-c', 'from stylelens.cli.data import data; data()', *args]


def test_data_info_through_the_console_script(subset, tmp_path):
    env = {**os.environ, 'STYLELENS_CACHE': str(tmp_path / 'cache')}
    result = subprocess.run(_data_command('info', f'cifar10:{subset}:dog'), capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    dogs = len(load_dataset(f'cifar10:{subset}:dog'))
    lines = result.stdout.splitlines()
    assert f'images      {dogs}' in lines and 'resolution  32x32' in lines and 'channels    3' in lines
    assert lines[-1].split() == ['5', 'dog', str(dogs)]


@pytest.mark.skipif('data' not in COMMANDS, reason='`data` is not registered in stylelens.cli.COMMANDS yet')
def test_data_errors_are_one_line(subset, tmp_path):
    result = subprocess.run(['stylelens', 'data', 'info', f'cifar10:{subset}:wolf'], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert "unknown class 'wolf' for cifar10; valid: airplane" in result.stderr


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes) and counts requests."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        body = self.server.files.get(self.path)  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Files)
    srv.daemon_threads = True
    srv.files, srv.requests = {}, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _base(srv: http.server.HTTPServer) -> str:
    return f'http://127.0.0.1:{srv.server_address[1]}'


def test_download_then_load(server, tmp_path, monkeypatch):
    batches = {**{f'data_batch_{i}': _batch(3, seed=i) for i in range(1, 6)}, 'test_batch': _batch(2)}
    archive = _cifar_tarball(tmp_path / 'fake.tar.gz', batches).read_bytes()
    server.files['/cifar-10-python.tar.gz'] = archive
    remote = RemoteFile(f'{_base(server)}/cifar-10-python.tar.gz', hashlib.md5(archive).hexdigest())
    monkeypatch.setitem(sd.DATASETS, 'cifar10', DatasetSource('cifar10', CIFAR10_CLASSES, (remote,), True))
    dest = tmp_path / 'got'
    result = CliRunner().invoke(data_group, ['download', 'cifar10', '--dest', str(dest)])
    assert result.exit_code == 0, result.output
    spec = f"cifar10:{dest / 'cifar-10-python.tar.gz'}"
    assert file_md5(dest / 'cifar-10-python.tar.gz') == remote.md5
    assert f'Use it with: --data {spec}' in result.output
    assert len(load_dataset(spec)) == 15 and len(load_dataset(spec, split='test')) == 2
    again = CliRunner().invoke(data_group, ['download', 'cifar10', '--dest', str(dest)])
    assert again.exit_code == 0 and len(server.requests) == 1  # a verified copy is not fetched again


def test_download_default_folder_is_in_the_cache(server, tmp_path, monkeypatch):
    server.files['/x.bin'] = b'payload'
    remote = RemoteFile(f'{_base(server)}/x.bin', hashlib.md5(b'payload').hexdigest())
    monkeypatch.setitem(sd.DATASETS, 'mnist', DatasetSource('mnist', sd.MNIST_CLASSES, (remote,), False))
    result = CliRunner().invoke(data_group, ['download', 'MNIST'])
    folder = tmp_path / 'cache' / 'data' / 'mnist'
    assert result.exit_code == 0 and (folder / 'x.bin').read_bytes() == b'payload'
    assert f'Use it with: --data mnist:{folder}' in result.output


def test_mirror_with_wrong_content_is_deleted(server, tmp_path):
    """--url points at a mirror; files that fail the published MD5 (or sha256) are refused and removed."""
    for name in ('train-images-idx3-ubyte.gz', 'cifar-10-python.tar.gz'):
        server.files[f'/mirror/{name}'] = b'not the real file'
    dest = tmp_path / 'mnist'
    mirror = f'{_base(server)}/mirror/'
    result = CliRunner().invoke(data_group, ['download', 'mnist', '--dest', str(dest), '--url', mirror])
    assert isinstance(result.exception, StylelensError)
    assert (f'checksum mismatch for {mirror}train-images-idx3-ubyte.gz: expected md5 '
            f'f68b3c2dcbeaaa9fbdd348bbdeb94873') in str(result.exception)
    assert list(dest.iterdir()) == [] and not (tmp_path / 'cache' / 'known_hashes.json').exists()
    result = CliRunner().invoke(data_group, ['download', 'cifar10', '--dest', str(tmp_path / 'c'),
                                             '--url', f'{_base(server)}/mirror'])
    assert 'expected sha256 6d958be0' in str(result.exception)
    assert not (tmp_path / 'c' / 'cifar-10-python.tar.gz').exists()


def test_data_help_shows_examples():
    for args in (['--help'], ['download', '--help'], ['info', '--help']):
        assert 'Example' in CliRunner().invoke(data_group, args).output
