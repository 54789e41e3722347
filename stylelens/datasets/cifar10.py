"""CIFAR-10 in the official python format, read from the tarball or its folder without running pickled code."""
from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np

from stylelens.datasets.specs import CIFAR10_CLASSES, check_split
from stylelens.errors import StylelensError
from stylelens.loading.safe_pickle import UnsafePickleError

CIFAR10_DIR = 'cifar-10-batches-py'
CIFAR10_MEMBERS = {'train': tuple(f'data_batch_{i}' for i in range(1, 6)), 'test': ('test_batch',)}
CIFAR10_ROW_BYTES = 3 * 32 * 32


def _numpy_reconstruct() -> Callable[..., Any]:
    """The function numpy itself pickles arrays with (its module moved between numpy 1 and 2)."""
    return np.empty(0).__reduce__()[0]


_CIFAR_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'): _numpy_reconstruct(),
    ('numpy._core.multiarray', '_reconstruct'): _numpy_reconstruct(),
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch: dicts, lists, bytes and numpy arrays only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise UnsafePickleError(f'refused global {module}.{name} in a CIFAR-10 batch: only numpy arrays are '
                                    f'allowed there; nothing was run')
        return _CIFAR_GLOBALS[module, name]


def _unpickle_batch(blob: bytes, where: str) -> dict:
    """One batch file as a dict with str keys, decoded by the restricted unpickler."""
    try:
        record = _CifarUnpickler(io.BytesIO(blob), encoding='bytes').load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError) as err:
        raise StylelensError(f'{where} is not a readable CIFAR-10 batch ({type(err).__name__}: {err})') from None
    if not isinstance(record, dict):
        raise StylelensError(f'{where} is not a CIFAR-10 batch: it holds a {type(record).__name__}, not a dict')
    return {k.decode('latin-1') if isinstance(k, bytes) else k: v for k, v in record.items()}


def _cifar_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check one batch: uint8 pixels as NHWC 32x32x3 and int64 labels in 0..9."""
    record = _unpickle_batch(blob, where)
    data, labels = record.get('data'), record.get('labels')
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == CIFAR10_ROW_BYTES):
        raise StylelensError(f"{where} is not a CIFAR-10 batch: 'data' must be a uint8 array of shape "
                             f"[N, {CIFAR10_ROW_BYTES}]")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise StylelensError(f"{where} is not a CIFAR-10 batch: 'labels' must be a list of integers") from None
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= len(CIFAR10_CLASSES):
        raise StylelensError(f'{where} is not a CIFAR-10 batch: expected {len(data)} labels in 0-9')
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_blobs_from_tar(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read the wanted batch members straight out of a (gzipped) tar archive, in one pass, extracting nothing."""
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, 'r:*') as tar:
            for member in tar:
                member_path = PurePosixPath(member.name)
                if member.isfile() and member_path.parent.name == CIFAR10_DIR and member_path.name in names:
                    blobs[member_path.name] = tar.extractfile(member).read()
                    if len(blobs) == len(names):
                        break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise StylelensError(f'cannot read {path} as a CIFAR-10 tar archive ({err}); damaged or truncated?') from None
    return blobs


def _cifar_blobs_from_dir(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read the wanted batch files from ``cifar-10-batches-py`` or the folder that holds it."""
    folder = path / CIFAR10_DIR if (path / CIFAR10_DIR).is_dir() else path
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def read_cifar10(path: Path, split: str = 'train') -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the official python archive (``.tar.gz``) or its extracted folder: uint8 NHWC and labels."""
    path = Path(path)
    if not path.exists():
        raise StylelensError(f'CIFAR-10 path {path} does not exist: give cifar-10-python.tar.gz or the folder '
                             f'that holds {CIFAR10_DIR}/ (`stylelens data download cifar10` fetches it)')
    check_split(split, 'cifar10')
    names = CIFAR10_MEMBERS[split]
    blobs = _cifar_blobs_from_tar(path, names) if path.is_file() else _cifar_blobs_from_dir(path, names)
    missing = [name for name in names if name not in blobs]
    if missing:
        raise StylelensError(f"{path} lacks {CIFAR10_DIR}/{', '.join(missing)}: not the CIFAR-10 python version?")
    batches = [_cifar_batch(blobs[name], f'{path}:{name}') for name in names]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


# ---------------------------------------------------------------------------------------------------------- IDX
