"""The `--data KIND:PATH[:CLASSES]` spec: the data set kinds, their class names and official files, and parsing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stylelens.datasets.shapes import SHAPES
from stylelens.errors import StylelensError

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')
MNIST_CLASSES = tuple('0123456789')
FASHION_MNIST_CLASSES = ('t-shirt/top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag',
                         'ankle-boot')
SPLITS = ('train', 'test')
CHANNELS = (1, 3)
RESOLUTION_RANGE = (4, 1024)
UNLABELED = -1  # the label of every image from a folder


_SPEC_EXAMPLE = ('e.g. cifar10:data/cifar-10-python.tar.gz:dog or mnist:data/mnist:3,5 or folder:my_images or '
                 'shapes:20000')


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
        return f'{self.name}:{target}'


def _idx_files(base_url: str, md5s: tuple[str, str, str, str]) -> tuple[RemoteFile, ...]:
    """The four official IDX archives (train/test images/labels) under ``base_url``, with their MD5s."""
    names = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz',
             't10k-labels-idx1-ubyte.gz')
    return tuple(RemoteFile(base_url + name, md5) for name, md5 in zip(names, md5s))


DATASETS = {
    'cifar10': DatasetSource('cifar10', CIFAR10_CLASSES, (RemoteFile(
        'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz', 'c58f30108f718f92721af3b95e74349a',
        '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce'),), spec_names_file=True),
    'mnist': DatasetSource('mnist', MNIST_CLASSES, _idx_files(
        'https://ossci-datasets.s3.amazonaws.com/mnist/',
        ('f68b3c2dcbeaaa9fbdd348bbdeb94873', 'd53e105ee54ea40749a09fcbcd1e9432', '9fb629c4189551a2d022fa330f9573f3',
         'ec29112dd5afa0611ce80d1b7f02629c')), spec_names_file=False),
    'fashion-mnist': DatasetSource('fashion-mnist', FASHION_MNIST_CLASSES, _idx_files(
        'https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/',
        ('8d4fb7e6c68d591d4c3dfef9ec88bf0d', '25c81989df183df01b3e8a0aad5dffbe', 'bef4ecab320f06d8554ea6380940ec79',
         'bb300cfdad3c16e7a12a480ee83cd310')), spec_names_file=False),
}
KINDS = (*DATASETS, 'folder', 'shapes')


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
    if kind == 'shapes':
        return SHAPES
    return DATASETS[kind].class_names if kind in DATASETS else ()


def parse_data_spec(spec: str) -> DataSpec:
    """Parse ``cifar10|mnist|fashion-mnist:PATH[:CLASSES]`` or ``folder:PATH``; CLASSES are names or indices,
    comma-separated, case-insensitive (``dog`` or ``3,5``)."""
    kind, sep, rest = spec.partition(':')
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise StylelensError(f"bad --data {spec!r}: expected KIND:PATH[:CLASSES] with KIND one of "
                             f"{', '.join(KINDS)} ({_SPEC_EXAMPLE})")
    path, classes = (rest, None) if kind == 'folder' else _split_classes(rest)
    if not path:
        raise StylelensError(f'bad --data {spec!r}: PATH is empty ({_SPEC_EXAMPLE})')
    if kind == 'shapes' and not (path.isdigit() and int(path) > 0):
        raise StylelensError(f'bad --data {spec!r}: shapes takes an image count, e.g. shapes:20000 or '
                             f'shapes:20000:circle,square')
    chosen = None if classes is None else parse_classes(classes, kind)
    return DataSpec(kind, Path(path).expanduser(), chosen)


def _split_classes(rest: str) -> tuple[str, str | None]:
    """``PATH[:CLASSES]`` -> (PATH, CLASSES); a colon belongs to PATH when the whole text names an existing file."""
    if ':' not in rest or Path(rest).expanduser().exists():
        return rest, None
    path, classes = rest.rsplit(':', 1)
    return path, classes


def _class_key(name: str) -> str:
    """Spelling-insensitive form of a class name: 'Ankle boot', 'ankle_boot' and 'ankle-boot' all match."""
    return ''.join(ch for ch in name.lower() if ch.isalnum())


def parse_classes(text: str, kind: str) -> tuple[int, ...]:
    """Comma-separated class names or indices of dataset ``kind`` -> sorted unique indices."""
    names = _class_names(kind)
    by_key = {_class_key(name): index for index, name in enumerate(names)}
    valid = f"valid: {', '.join(names)} (or indices 0-{len(names) - 1})"
    chosen = set()
    for token in (t.strip() for t in text.split(',')):
        if not token:
            raise StylelensError(f'empty class in {text!r} for {kind}; {valid}')
        index = int(token) if token.isdigit() else by_key.get(_class_key(token))
        if index is None or not 0 <= index < len(names):
            raise StylelensError(f'unknown class {token!r} for {kind}; {valid}')
        chosen.add(index)
    return tuple(sorted(chosen))


def check_split(split: str, kind: str) -> None:
    """Refuse a split the dataset kind lacks (folders have only 'train'), naming the valid ones."""
    splits = ('train',) if kind == 'folder' else SPLITS
    if split not in splits:
        raise StylelensError(f"unknown split {split!r} for {kind}; valid: {', '.join(splits)}")
