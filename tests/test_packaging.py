"""Offline builds as pip does them: a wheel from the tree, an sdist, a wheel from the sdist, and what they hold."""
from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_FILES = ('stylelens/checkpoints/demo.pkl', 'stylelens/checkpoints/registry.json')
VENDOR_FILES = ('stylelens/vendor/stylegan2_ada/networks.py', 'stylelens/vendor/stylegan2_ada/ops.py')
CONSOLE_SCRIPT = 'stylelens = stylelens.cli:main'


def package_dirs() -> dict[str, str]:
    """setup.cfg's package_dir: installed path (e.g. `stylelens/vendor`) -> source folder (e.g. `vendor`)."""
    config = configparser.ConfigParser()
    config.read(REPO / 'setup.cfg')
    lines = [line.split('=') for line in config['options']['package_dir'].strip().splitlines()]
    return {package.strip().replace('.', '/'): folder.strip() for package, folder in lines}


def installed_sources() -> dict[str, str]:
    """Every module and package `__init__` under the mapped source folders: installed path -> source path."""
    mapped = {}
    for package, folder in package_dirs().items():
        for path in (REPO / folder).rglob('*.py'):
            if '__pycache__' not in path.parts:
                relative = path.relative_to(REPO / folder).as_posix()
                mapped[f'{package}/{relative}'] = f'{folder}/{relative}'
    return mapped


def copy_checkout(dest: Path) -> Path:
    """Copy what a clone holds (tracked, or untracked and not ignored; without git, all but caches) to `dest`."""
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                            capture_output=True)
    if listed.returncode != 0:
        ignore = shutil.ignore_patterns('.git', 'build', 'dist', '*.egg-info', '__pycache__', '.pytest_cache')
        return Path(shutil.copytree(REPO, dest, ignore=ignore))
    for name in filter(None, listed.stdout.decode().split('\0')):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def run(*args: str, cwd: Path) -> None:
    """Run a build command, showing its output if it fails."""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f'{" ".join(args)} failed:\n{done.stdout}\n{done.stderr}'


def pip_wheel(source: Path, out: Path) -> Path:
    """`pip wheel` of a folder or an sdist, without dependencies, build isolation or an index; the wheel's path."""
    run(sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-q', str(source),
        '-w', str(out), cwd=out.parent)
    wheel, = out.glob('stylelens-*.whl')
    return wheel


def can_build_wheels() -> bool:
    """Whether setuptools here builds wheels without build isolation (70.1 on, or with `wheel` installed)."""
    import setuptools

    version = tuple(int(part) for part in setuptools.__version__.split('.')[:2] if part.isdigit())
    return version >= (70, 1) or importlib.util.find_spec('wheel') is not None


@pytest.fixture(scope='module')
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A wheel built from a copy of the checkout, an sdist of it, and a wheel built from that sdist."""
    if not can_build_wheels():
        pytest.skip('this setuptools cannot build wheels without build isolation (needs 70.1 or the wheel package)')
    root = tmp_path_factory.mktemp('packaging')
    tree = copy_checkout(root / 'tree')
    dist = root / 'dist'
    dist.mkdir()
    run(sys.executable, '-c', 'import setuptools.build_meta as b, sys; b.build_sdist(sys.argv[1])', str(dist),
        cwd=tree)
    sdist, = dist.glob('stylelens-*.tar.gz')
    (root / 'from_tree').mkdir()
    (root / 'from_sdist').mkdir()
    return dict(wheel=pip_wheel(tree, root / 'from_tree'), sdist=sdist,
                sdist_wheel=pip_wheel(sdist, root / 'from_sdist'))


def test_pyproject_declares_only_the_build_system() -> None:
    """pyproject.toml names setuptools' backend and nothing else: setup.cfg stays the one place for metadata."""
    tomllib = pytest.importorskip('tomllib')
    pyproject = tomllib.loads((REPO / 'pyproject.toml').read_text(encoding='utf-8'))
    assert list(pyproject) == ['build-system']
    assert pyproject['build-system']['build-backend'] == 'setuptools.build_meta'
    assert any(req.replace(' ', '').startswith('setuptools>=') for req in pyproject['build-system']['requires'])


@pytest.mark.parametrize('kind', ['wheel', 'sdist_wheel'])
def test_wheel_holds_packages_vendor_and_demo_network(builds: dict[str, Path], kind: str) -> None:
    """Every mapped module and `__init__`, the vendored networks, the registry, the demo network, the console script."""
    with zipfile.ZipFile(builds[kind]) as wheel:
        names = set(wheel.namelist())
        missing = sorted({*installed_sources(), *VENDOR_FILES, *DATA_FILES} - names)
        assert not missing, f'{builds[kind].name} lacks {missing}'
        assert wheel.read('stylelens/checkpoints/demo.pkl') == (REPO / 'checkpoints' / 'demo.pkl').read_bytes()
        entry_points, = [name for name in names if name.endswith('.dist-info/entry_points.txt')]
        assert CONSOLE_SCRIPT in wheel.read(entry_points).decode()


def test_sdist_holds_sources_vendor_and_checkpoints(builds: dict[str, Path]) -> None:
    """The build files and every source folder that setup.cfg maps, vendor/ and checkpoints/ (data) included."""
    with tarfile.open(builds['sdist']) as sdist:
        names = {PurePosixPath(*PurePosixPath(name).parts[1:]).as_posix() for name in sdist.getnames()}
    data = {f'checkpoints/{PurePosixPath(name).name}' for name in DATA_FILES}
    expected = {'setup.cfg', 'pyproject.toml', 'README.md'} | set(installed_sources().values()) | data
    missing = sorted(expected - names)
    assert not missing, f'{builds["sdist"].name} lacks {missing}'
