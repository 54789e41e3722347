"""Registry, ``--network`` resolution and the ``networks`` command (offline; URLs served on 127.0.0.1)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from stylelens import load_generator
from stylelens.cli.networks import networks
from stylelens.errors import StylelensError
from stylelens.loading.registry import default_network_name, get_entry, list_entries, resolve_source

OFFICIAL = {'ffhq': 1024, 'metfaces': 1024, 'afhqcat': 512, 'afhqdog': 512, 'afhqwild': 512, 'brecahad': 512,
            'cifar10': 32}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv('STYLELENS_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


@pytest.fixture()
def served(tmp_path: Path):
    root = tmp_path / 'www'
    root.mkdir()
    (root / 'tiny.pkl').write_bytes(b'not really a pickle' * 1000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{srv.server_address[1]}/tiny.pkl', root / 'tiny.pkl'
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def test_official_entries() -> None:
    entries = {e.name: e for e in list_entries()}
    for name, res in OFFICIAL.items():
        e = entries[name]
        assert e.url == f'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/{name}.pkl'
        assert e.resolution == res and e.kind == 'stylegan2-ada' and e.img_channels == 3
        assert e.sha256 is None and 'NVIDIA' in (e.licence or '') and e.description
    assert entries['cifar10'].c_dim == 10 and len(entries['cifar10'].class_names or []) == 10
    assert entries['ffhq'].c_dim == 0 and entries['ffhq'].class_names is None


def test_demo_entry() -> None:
    demo = get_entry(default_network_name())
    assert demo.embedded and demo.path == 'demo.pkl' and demo.local_path().is_file()
    G = load_generator(demo.local_path())
    assert (demo.resolution, demo.c_dim, demo.img_channels) == (G.img_resolution, G.c_dim, G.img_channels)
    description = demo.description.lower()
    assert 'trained' in description and 'shapes' in description
    assert 'random weights' not in description and 'not trained' not in description
    assert demo.resolution == 32 and '32x32' in description


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(StylelensError) as err:
        get_entry('nope')
    msg = str(err.value)
    assert 'nope' in msg and 'demo' in msg and 'ffhq' in msg and 'URL' in msg and '\n' not in msg


def test_resolve_missing_source() -> None:
    with pytest.raises(StylelensError, match=r"no network 'foo': not a file, not an http\(s\) URL.*known: demo"):
        resolve_source('foo')


def test_resolve_existing_path(tmp_path: Path) -> None:
    f = tmp_path / 'mine.pkl'
    f.write_bytes(b'abc')
    got = resolve_source(str(f))
    assert got.path == f and got.entry is None and got.url is None
    assert got.sha256 == hashlib.sha256(b'abc').hexdigest()


def test_resolve_url_downloads_into_cache(served, _cache: Path) -> None:
    url, original = served
    got = resolve_source(url, progress=False)
    assert got.url == url and got.path.read_bytes() == original.read_bytes()
    assert got.path.parent == _cache / 'networks'
    assert got.sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
    assert resolve_source(url, progress=False).path == got.path


def test_resolve_url_with_explicit_cache_dir(served, tmp_path: Path) -> None:
    url, _ = served
    got = resolve_source(url, cache_dir=tmp_path / 'elsewhere', progress=False)
    assert got.path.parent == tmp_path / 'elsewhere' / 'networks'
    assert url in json.loads((tmp_path / 'elsewhere' / 'known_hashes.json').read_text())


def test_networks_command_table() -> None:
    result = CliRunner().invoke(networks, [])
    assert result.exit_code == 0, result.output
    for name in ['demo', *OFFICIAL]:
        assert name in result.output
    assert 'CACHED' in result.output


def test_networks_command_json() -> None:
    result = CliRunner().invoke(networks, ['--json'])
    rows = {r['name']: r for r in json.loads(result.output)}
    assert set(OFFICIAL) | {'demo'} <= set(rows)
    assert rows['ffhq']['cached'] is False and rows['ffhq']['sha256_known'] is False
    assert rows['cifar10']['class_names'][0] == 'airplane'


def test_networks_help_has_example() -> None:
    result = CliRunner().invoke(networks, ['--help'])
    assert 'stylelens networks --json' in result.output


def test_a_folder_named_like_a_registry_entry_does_not_shadow_it(tmp_path: Path, monkeypatch) -> None:
    """`--network demo` (and the default) in a directory that happens to hold a `demo/` folder still mean the
    registry's demo; a folder with a generator.pt is a train run and wins, as an explicit path should."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'demo').mkdir()
    shipped = get_entry('demo').local_path()
    assert resolve_source('demo').path == shipped
    assert load_generator().img_resolution == load_generator('demo').img_resolution
    (tmp_path / 'other_dir').mkdir()
    with pytest.raises(StylelensError, match='not a stylelens train run'):
        resolve_source('other_dir')
