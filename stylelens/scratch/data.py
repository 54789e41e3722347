"""Training sets for the from-scratch GANs: CIFAR-10, MNIST, Fashion-MNIST, image folders and the procedural
shapes set, named by one ``--data KIND:PATH[:CLASSES]`` spec (``shapes:COUNT[:CLASSES]``) and held in memory whole
(they are small), read from the official archives without extracting them and without running pickled code."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from stylelens.errors import StylelensError
from stylelens.loading.download import cache_dir, download
from stylelens.loading.safe_pickle import UnsafePickleError
from stylelens.scratch.shapes import SHAPES, make_shapes

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_CLASSES = tuple("0123456789")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle-boot")
SPLITS = ("train", "test")
CHANNELS = (1, 3)
RESOLUTION_RANGE = (4, 1024)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
UNLABELED = -1  # the label of every image from a folder

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_MEMBERS = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
CIFAR10_ROW_BYTES = 3 * 32 * 32
IDX_PREFIXES = {"train": "train", "test": "t10k"}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"
_MODES = {1: "L", 3: "RGB"}
_SPEC_EXAMPLE = ("e.g. cifar10:data/cifar-10-python.tar.gz:dog or mnist:data/mnist:3,5 or folder:my_images or "
                 "shapes:20000")


@dataclass(frozen=True)
class RemoteFile:
    """One file of an official dataset: where it lives and the checksums that pin its content."""

    url: str
    md5: str
    sha256: str | None = None

    @property
    def name(self) -> str:
        return PurePosixPath(self.url).name


@dataclass(frozen=True)
class DatasetSource:
    """A downloadable dataset: its class names, its files, and whether a spec names the archive or the folder."""

    name: str
    class_names: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    spec_names_file: bool

    def spec_for(self, folder: Path) -> str:
        """The ``--data`` spec that reads this dataset once its files are in ``folder``."""
        target = folder / self.files[0].name if self.spec_names_file else folder
        return f"{self.name}:{target}"


def _idx_files(base_url: str, md5s: tuple[str, str, str, str]) -> tuple[RemoteFile, ...]:
    """The four official IDX archives (train/test images/labels) under ``base_url``, with their MD5s."""
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
    return tuple(RemoteFile(base_url + name, md5) for name, md5 in zip(names, md5s))


DATASETS = {
    "cifar10": DatasetSource("cifar10", CIFAR10_CLASSES, (RemoteFile(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),), spec_names_file=True),
    "mnist": DatasetSource("mnist", MNIST_CLASSES, _idx_files(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432", "9fb629c4189551a2d022fa330f9573f3",
         "ec29112dd5afa0611ce80d1b7f02629c")), spec_names_file=False),
    "fashion-mnist": DatasetSource("fashion-mnist", FASHION_MNIST_CLASSES, _idx_files(
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe", "bef4ecab320f06d8554ea6380940ec79",
         "bb300cfdad3c16e7a12a480ee83cd310")), spec_names_file=False),
}
KINDS = (*DATASETS, "folder", "shapes")


# ---------------------------------------------------------------------------------------------------------- specs

@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value: dataset kind, path, and the class indices to keep (None = all)."""

    kind: str
    path: Path
    classes: tuple[int, ...] | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return _class_names(self.kind)


def _class_names(kind: str) -> tuple[str, ...]:
    """The class names of a data set kind (none for folders)."""
    if kind == "shapes":
        return SHAPES
    return DATASETS[kind].class_names if kind in DATASETS else ()


def parse_data_spec(spec: str) -> DataSpec:
    """Parse ``cifar10|mnist|fashion-mnist:PATH[:CLASSES]`` or ``folder:PATH``; CLASSES are names or indices,
    comma-separated, case-insensitive (``dog`` or ``3,5``)."""
    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise StylelensError(f"bad --data {spec!r}: expected KIND:PATH[:CLASSES] with KIND one of "
                             f"{', '.join(KINDS)} ({_SPEC_EXAMPLE})")
    path, classes = (rest, None) if kind == "folder" else _split_classes(rest)
    if not path:
        raise StylelensError(f"bad --data {spec!r}: PATH is empty ({_SPEC_EXAMPLE})")
    if kind == "shapes" and not (path.isdigit() and int(path) > 0):
        raise StylelensError(f"bad --data {spec!r}: shapes takes an image count, e.g. shapes:20000 or "
                             f"shapes:20000:circle,square")
    chosen = None if classes is None else parse_classes(classes, kind)
    return DataSpec(kind, Path(path).expanduser(), chosen)


def _split_classes(rest: str) -> tuple[str, str | None]:
    """``PATH[:CLASSES]`` -> (PATH, CLASSES); a colon belongs to PATH when the whole text names an existing file."""
    if ":" not in rest or Path(rest).expanduser().exists():
        return rest, None
    path, classes = rest.rsplit(":", 1)
    return path, classes


def _class_key(name: str) -> str:
    """Spelling-insensitive form of a class name: 'Ankle boot', 'ankle_boot' and 'ankle-boot' all match."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def parse_classes(text: str, kind: str) -> tuple[int, ...]:
    """Comma-separated class names or indices of dataset ``kind`` -> sorted unique indices."""
    names = _class_names(kind)
    by_key = {_class_key(name): index for index, name in enumerate(names)}
    valid = f"valid: {', '.join(names)} (or indices 0-{len(names) - 1})"
    chosen = set()
    for token in (t.strip() for t in text.split(",")):
        if not token:
            raise StylelensError(f"empty class in {text!r} for {kind}; {valid}")
        index = int(token) if token.isdigit() else by_key.get(_class_key(token))
        if index is None or not 0 <= index < len(names):
            raise StylelensError(f"unknown class {token!r} for {kind}; {valid}")
        chosen.add(index)
    return tuple(sorted(chosen))


def check_split(split: str, kind: str) -> None:
    """Refuse a split the dataset kind lacks (folders have only 'train'), naming the valid ones."""
    splits = ("train",) if kind == "folder" else SPLITS
    if split not in splits:
        raise StylelensError(f"unknown split {split!r} for {kind}; valid: {', '.join(splits)}")


# ---------------------------------------------------------------------------------------------------------- CIFAR-10

def _numpy_reconstruct() -> Callable[..., Any]:
    """The function numpy itself pickles arrays with (its module moved between numpy 1 and 2)."""
    return np.empty(0).__reduce__()[0]


_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch: dicts, lists, bytes and numpy arrays only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise UnsafePickleError(f"refused global {module}.{name} in a CIFAR-10 batch: only numpy arrays are "
                                    f"allowed there; nothing was run")
        return _CIFAR_GLOBALS[module, name]


def _unpickle_batch(blob: bytes, where: str) -> dict:
    """One batch file as a dict with str keys, decoded by the restricted unpickler."""
    try:
        record = _CifarUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError) as err:
        raise StylelensError(f"{where} is not a readable CIFAR-10 batch ({type(err).__name__}: {err})") from None
    if not isinstance(record, dict):
        raise StylelensError(f"{where} is not a CIFAR-10 batch: it holds a {type(record).__name__}, not a dict")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in record.items()}


def _cifar_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check one batch: uint8 pixels as NHWC 32x32x3 and int64 labels in 0..9."""
    record = _unpickle_batch(blob, where)
    data, labels = record.get("data"), record.get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == CIFAR10_ROW_BYTES):
        raise StylelensError(f"{where} is not a CIFAR-10 batch: 'data' must be a uint8 array of shape "
                             f"[N, {CIFAR10_ROW_BYTES}]")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise StylelensError(f"{where} is not a CIFAR-10 batch: 'labels' must be a list of integers") from None
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= len(CIFAR10_CLASSES):
        raise StylelensError(f"{where} is not a CIFAR-10 batch: expected {len(data)} labels in 0-9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_blobs_from_tar(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read the wanted batch members straight out of a (gzipped) tar archive, in one pass, extracting nothing."""
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                member_path = PurePosixPath(member.name)
                if member.isfile() and member_path.parent.name == CIFAR10_DIR and member_path.name in names:
                    blobs[member_path.name] = tar.extractfile(member).read()
                    if len(blobs) == len(names):
                        break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise StylelensError(f"cannot read {path} as a CIFAR-10 tar archive ({err}); damaged or truncated?") from None
    return blobs


def _cifar_blobs_from_dir(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read the wanted batch files from ``cifar-10-batches-py`` or the folder that holds it."""
    folder = path / CIFAR10_DIR if (path / CIFAR10_DIR).is_dir() else path
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def read_cifar10(path: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the official python archive (``.tar.gz``) or its extracted folder: uint8 NHWC and labels."""
    path = Path(path)
    if not path.exists():
        raise StylelensError(f"CIFAR-10 path {path} does not exist: give cifar-10-python.tar.gz or the folder "
                             f"that holds {CIFAR10_DIR}/ (`stylelens data download cifar10` fetches it)")
    check_split(split, "cifar10")
    names = CIFAR10_MEMBERS[split]
    blobs = _cifar_blobs_from_tar(path, names) if path.is_file() else _cifar_blobs_from_dir(path, names)
    missing = [name for name in names if name not in blobs]
    if missing:
        raise StylelensError(f"{path} lacks {CIFAR10_DIR}/{', '.join(missing)}: not the CIFAR-10 python version?")
    batches = [_cifar_batch(blobs[name], f"{path}:{name}") for name in names]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


# ---------------------------------------------------------------------------------------------------------- IDX

def _read_maybe_gzipped(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic (whatever its name says)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise StylelensError(f"cannot gunzip {path} ({err}): truncated download?") from None


def _idx_payload(path: Path, magic: int, dims: int) -> tuple[tuple[int, ...], bytes]:
    """Check an IDX file's magic number and size; return its dimensions and its data bytes."""
    raw = _read_maybe_gzipped(Path(path))
    header = 4 * (1 + dims)
    if len(raw) < header:
        raise StylelensError(f"{path} is not an IDX file: only {len(raw)} bytes, shorter than its header")
    found, *shape = struct.unpack(f">{1 + dims}I", raw[:header])
    if found != magic:
        what = "image" if magic == IDX_IMAGES_MAGIC else "label"
        raise StylelensError(f"{path} is not an IDX {what} file: magic number 0x{found:08x}, expected "
                             f"0x{magic:08x}")
    payload = raw[header:]
    if len(payload) != int(np.prod(shape)):
        raise StylelensError(f"{path} holds {len(payload)} data bytes but its header promises "
                             f"{' x '.join(map(str, shape))} = {int(np.prod(shape))}: truncated or damaged")
    return tuple(shape), payload


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX image file (``*-images-idx3-ubyte[.gz]``) as uint8 [N, H, W]."""
    shape, payload = _idx_payload(path, IDX_IMAGES_MAGIC, 3)
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape).copy()


def read_idx_labels(path: Path, num_classes: int = 10) -> np.ndarray:
    """An IDX label file (``*-labels-idx1-ubyte[.gz]``) as int64 [N], each checked to lie in 0..num_classes-1."""
    _, payload = _idx_payload(path, IDX_LABELS_MAGIC, 1)
    labels = np.frombuffer(payload, dtype=np.uint8).astype(np.int64)
    if labels.size and labels.max() >= num_classes:
        raise StylelensError(f"{path} has label {labels.max()}; labels must lie in 0-{num_classes - 1}")
    return labels


def _idx_file(folder: Path, stem: str) -> Path:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise StylelensError(f"{folder} has no {stem} or {stem}.gz (the official IDX files; `stylelens data download "
                         f"mnist` or `fashion-mnist` fetches them)")


def read_idx_dataset(folder: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST from a folder of official IDX files: uint8 NHWC (C = 1) and labels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StylelensError(f"{folder} is not a folder: give the folder holding the IDX files "
                             f"(train-images-idx3-ubyte.gz, ...)")
    check_split(split, "mnist/fashion-mnist")
    prefix = IDX_PREFIXES[split]
    images_path = _idx_file(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise StylelensError(f"{images_path.name} has {len(images)} images but {labels_path.name} has "
                             f"{len(labels)} labels")
    return images[..., None], labels


# ---------------------------------------------------------------------------------------------------------- images

def _to_array(image: Image.Image, resolution: int | None, mode: str) -> np.ndarray:
    """One image as uint8 HWC in ``mode`` ('L' or 'RGB'), center-cropped to a square, resized (antialiased)."""
    image = image.convert(mode)
    side = min(image.size)
    if image.size != (side, side):
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if resolution is not None and side != resolution:
        image = image.resize((resolution, resolution), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _convert_arrays(pixels: np.ndarray, resolution: int | None, channels: int | None) -> np.ndarray:
    """Square (center crop), resize and/or change the channels of uint8 NHWC images with PIL; returned unchanged
    when they are square and nothing else is asked."""
    native, height, width = pixels.shape[-1], pixels.shape[1], pixels.shape[2]
    if height == width and resolution in (None, height) and channels in (None, native):
        return pixels
    mode = _MODES[channels or native]
    return np.stack([_to_array(Image.fromarray(p[..., 0] if native == 1 else p), resolution, mode) for p in pixels])


def _image_files(folder: Path) -> list[Path]:
    """Every .png/.jpg/.jpeg under ``folder`` (recursive), sorted by relative path."""
    if not folder.is_dir():
        raise StylelensError(f"{folder} is not a folder of images")
    files = sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not files:
        raise StylelensError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {folder}")
    return files


def _open_image(path: Path) -> Image.Image:
    """Decode one image file into memory as 'L' (grayscale sources) or 'RGB' (everything else)."""
    try:
        with Image.open(path) as image:
            return image.convert("L" if image.mode in ("1", "L") else "RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise StylelensError(f"cannot read image {path}: {err}") from None


def read_image_folder(folder: Path, resolution: int | None = None, channels: int | None = None) -> np.ndarray:
    """Every image under ``folder`` as uint8 NHWC: grayscale only if all are, squared by a center crop, resized."""
    folder = Path(folder)
    images = [_open_image(path) for path in _image_files(folder)]
    mode = _MODES[channels] if channels else "L" if all(im.mode == "L" for im in images) else "RGB"
    arrays = [_to_array(image, resolution, mode) for image in images]
    sizes = sorted({a.shape[0] for a in arrays})
    if len(sizes) > 1:
        raise StylelensError(f"images under {folder} have different sizes ({', '.join(f'{s}x{s}' for s in sizes)} "
                             f"after a square crop): pass a resolution, e.g. 64")
    return np.stack(arrays)


# ---------------------------------------------------------------------------------------------------------- dataset

@dataclass(eq=False, repr=False)
class ImageDataset(Dataset):
    """Images held as uint8 NCHW and served as float32 in [-1, 1] with int64 labels (-1 for unlabeled images)."""

    pixels: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    spec: str
    split: str = "train"

    def __repr__(self) -> str:
        return (f"ImageDataset({self.spec!r}, split={self.split!r}, {len(self)} images, "
                f"{self.channels}x{self.resolution}x{self.resolution})")

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_float(self.pixels[index]), self.labels[index]

    @cached_property
    def images(self) -> torch.Tensor:
        """All images as one float32 NCHW tensor in [-1, 1], made on first use and kept."""
        return to_float(self.pixels)

    @property
    def resolution(self) -> int:
        return self.pixels.shape[-1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[1]

    @property
    def num_classes(self) -> int:
        """Number of classes of the dataset (0 when unlabeled), also when a spec keeps only some of them."""
        return len(self.class_names)

    def class_counts(self) -> dict[str, int]:
        """Images per class name, in class order, only for classes present."""
        counts = torch.bincount(self.labels[self.labels >= 0], minlength=self.num_classes).tolist()
        return {name: n for name, n in zip(self.class_names, counts) if n}


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1] (0 -> -1, 255 -> 1), the range the generators produce."""
    return pixels.float().div_(127.5).sub_(1)


def _check_options(kind: str, split: str, resolution: int | None, channels: int | None) -> None:
    """Refuse an unknown split, channel count or resolution, naming the valid choices."""
    check_split(split, kind)
    if channels not in (None, *CHANNELS):
        raise StylelensError(f"unknown channel count {channels!r}; valid: 1 (grayscale), 3 (RGB), or none to keep "
                             f"the native count")
    low, high = RESOLUTION_RANGE
    if resolution is not None and not (isinstance(resolution, int) and low <= resolution <= high):
        raise StylelensError(f"bad resolution {resolution!r}; valid: an integer from {low} to {high} (e.g. 28, 32, "
                             f"64), or none to keep the native size")


def _read_labeled(spec: DataSpec, split: str, resolution: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Read (or, for shapes, draw at `resolution`, default 32) a labeled dataset and keep only the spec's
    classes."""
    if spec.kind == "shapes":
        pixels, labels = make_shapes(int(spec.path.name), resolution or 32, split)
    else:
        reader = read_cifar10 if spec.kind == "cifar10" else read_idx_dataset
        pixels, labels = reader(spec.path, split)
    if spec.classes is None:
        return pixels, labels
    keep = np.isin(labels, spec.classes)
    if not keep.any():
        names = ", ".join(spec.class_names[i] for i in spec.classes)
        raise StylelensError(f"{spec.path} has no {split} images of class {names}")
    return pixels[keep], labels[keep]


def load_dataset(spec: str, split: str = "train", resolution: int | None = None,
                 channels: int | None = None) -> ImageDataset:
    """Load a ``--data`` spec whole into memory, resized to ``resolution`` and converted to ``channels`` (1 or 3)
    when given, else at native size and channel count."""
    parsed = parse_data_spec(spec)
    _check_options(parsed.kind, split, resolution, channels)
    if parsed.kind == "folder":
        pixels = read_image_folder(parsed.path, resolution, channels)
        labels = np.full(len(pixels), UNLABELED, dtype=np.int64)
    else:
        pixels, labels = _read_labeled(parsed, split, resolution)
        pixels = _convert_arrays(pixels, resolution, channels)
    nchw = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
    return ImageDataset(nchw, torch.from_numpy(labels), parsed.class_names, spec, split)


# ---------------------------------------------------------------------------------------------------------- download

def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks: the checksum the dataset authors publish."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def data_dir(name: str) -> Path:
    """Where ``stylelens data download NAME`` puts a dataset by default: ``cache_dir()/data/NAME``."""
    return cache_dir() / "data" / name


def dataset_source(name: str) -> DatasetSource:
    """The registry entry of a downloadable dataset, or an error listing the known names."""
    if name.lower() not in DATASETS:
        raise StylelensError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[name.lower()]


def _fetch(remote: RemoteFile, folder: Path, mirror: str | None, progress: bool) -> Path:
    """Download one file into ``folder`` unless a copy with the right MD5 is there; verify its MD5 after."""
    target = folder / remote.name
    if target.is_file() and file_md5(target) == remote.md5:
        return target
    url = f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url
    # The published checksums pin the content, so the downloader's trust-on-first-use store is kept private:
    # a bad first copy must not be recorded as the expected digest of this URL.
    with tempfile.TemporaryDirectory() as scratch:
        download(url, target, sha256=remote.sha256, progress=progress, hash_store=Path(scratch) / "hashes.json")
    got = file_md5(target)
    if got != remote.md5:
        target.unlink()
        target.with_name(target.name + ".sha256").unlink(missing_ok=True)
        raise StylelensError(f"checksum mismatch for {url}: expected md5 {remote.md5}, got {got}; "
                             f"the downloaded file was deleted")
    return target


def download_dataset(name: str, dest: Path | None = None, mirror: str | None = None,
                     progress: bool = True) -> list[Path]:
    """Fetch the official files of dataset ``name`` into ``dest`` (default ``data_dir(name)``), checksummed and
    resumable; ``mirror`` is a base URL holding the same file names. Returns the local files."""
    source = dataset_source(name)
    folder = Path(dest).expanduser() if dest else data_dir(source.name)
    folder.mkdir(parents=True, exist_ok=True)
    return [_fetch(remote, folder, mirror, progress) for remote in source.files]
