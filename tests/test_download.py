"""Downloader tests against a real HTTP server on 127.0.0.1 (no outside network)."""
from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from stylelens.errors import StylelensError
from stylelens.loading.download import cache_dir, cached_path, download, fetch_cached, known_hashes

PAYLOAD = hashlib.sha256(b'seed').digest() * 12_000  # 384,000 bytes
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class Behaviour:
    """What the test server does; tests flip these fields between requests."""

    def __init__(self) -> None:
        self.payload = PAYLOAD
        self.status = 200
        self.cut_after: int | None = None  # first request: send this many bytes, then drop the connection
        self.ignore_range = False
        self.delay = 0.0
        self.requests: list[dict[str, str]] = []
        self.released = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        b: Behaviour = self.server.behaviour  # type: ignore[attr-defined]
        b.requests.append(dict(self.headers))
        if b.delay:
            b.released.wait(b.delay)
        if b.status != 200:
            self.send_error(b.status)
            return
        data, start = b.payload, 0
        rng = self.headers.get('Range')
        if rng and not b.ignore_range:
            start = int(rng.split('=')[1].split('-')[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{len(data)}')
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if b.cut_after is not None:
            self.wfile.write(body[: b.cut_after])
            self.wfile.flush()
            b.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv('STYLELENS_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    srv.daemon_threads = True
    srv.behaviour = Behaviour()  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.behaviour.released.set()  # type: ignore[attr-defined]
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def url_of(srv: http.server.HTTPServer, name: str = 'net.pkl') -> str:
    return f'http://127.0.0.1:{srv.server_address[1]}/files/{name}'


def assert_nothing_left(dest: Path) -> None:
    assert not dest.exists()
    assert not dest.with_suffix(dest.suffix + '.part').exists()


def test_full_download_with_correct_sha(server, tmp_path: Path) -> None:
    dest = tmp_path / 'out' / 'net.pkl'
    assert download(url_of(server), dest, sha256=DIGEST, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_suffix('.pkl.part').exists()
    assert server.behaviour.requests[0]['User-Agent'].startswith('stylelens/')


def test_progress_bar_goes_to_stderr(server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    download(url_of(server), tmp_path / 'net.pkl', progress=True)
    out, err = capsys.readouterr()
    assert out == '' and 'Downloading' in err


def test_wrong_sha_deletes_everything(server, tmp_path: Path) -> None:
    dest = tmp_path / 'net.pkl'
    with pytest.raises(StylelensError) as err:
        download(url_of(server), dest, sha256='0' * 64, progress=False)
    assert '0' * 64 in str(err.value) and DIGEST in str(err.value)
    assert_nothing_left(dest)


def test_interrupted_download_resumes_with_range(server, tmp_path: Path) -> None:
    dest, url = tmp_path / 'net.pkl', url_of(server)
    server.behaviour.cut_after = 100_000
    with pytest.raises(StylelensError, match='interrupted'):
        download(url, dest, sha256=DIGEST, progress=False)
    part = dest.with_suffix('.pkl.part')
    assert not dest.exists() and part.stat().st_size == 100_000
    download(url, dest, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert server.behaviour.requests[-1]['Range'] == 'bytes=100000-'


def test_server_ignoring_range_restarts(server, tmp_path: Path) -> None:
    dest = tmp_path / 'net.pkl'
    dest.with_suffix('.pkl.part').write_bytes(b'stale bytes that are not the payload')
    server.behaviour.ignore_range = True
    download(url_of(server), dest, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert 'Range' in server.behaviour.requests[0]


def test_complete_part_and_416(server, tmp_path: Path) -> None:
    dest = tmp_path / 'net.pkl'
    dest.with_suffix('.pkl.part').write_bytes(PAYLOAD)
    download(url_of(server), dest, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_oversized_part_restarts_after_416(server, tmp_path: Path) -> None:
    dest = tmp_path / 'net.pkl'
    dest.with_suffix('.pkl.part').write_bytes(PAYLOAD + b'junk')
    download(url_of(server), dest, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD and len(server.behaviour.requests) == 2


@pytest.mark.parametrize('status', [404, 500])
def test_http_errors(server, tmp_path: Path, status: int) -> None:
    dest, url = tmp_path / 'net.pkl', url_of(server)
    server.behaviour.status = status
    with pytest.raises(StylelensError) as err:
        download(url, dest, progress=False)
    assert url in str(err.value) and str(status) in str(err.value) and '\n' not in str(err.value)
    assert_nothing_left(dest)


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    url = f'http://127.0.0.1:{port}/net.pkl'
    with pytest.raises(StylelensError, match='could not connect') as err:
        download(url, tmp_path / 'net.pkl', progress=False, timeout=5)
    assert url in str(err.value)
    assert_nothing_left(tmp_path / 'net.pkl')


def test_timeout(server, tmp_path: Path) -> None:
    server.behaviour.delay = 3.0
    with pytest.raises(StylelensError, match='time-out') as err:
        download(url_of(server), tmp_path / 'net.pkl', progress=False, timeout=0.3)
    assert url_of(server) in str(err.value)
    assert_nothing_left(tmp_path / 'net.pkl')


def test_hash_recorded_on_first_download_then_enforced(server, tmp_path: Path, _cache: Path) -> None:
    url = url_of(server)
    download(url, tmp_path / 'a.pkl', progress=False)
    assert known_hashes()[url] == {'sha256': DIGEST, 'size': len(PAYLOAD)}
    assert json.loads((_cache / 'known_hashes.json').read_text())[url]['sha256'] == DIGEST
    server.behaviour.payload = PAYLOAD[::-1]
    with pytest.raises(StylelensError, match='checksum mismatch') as err:
        download(url, tmp_path / 'b.pkl', progress=False)
    assert DIGEST in str(err.value)
    assert_nothing_left(tmp_path / 'b.pkl')


def test_cache_env_and_naming(server, _cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_dir() == _cache
    monkeypatch.delenv('STYLELENS_CACHE')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert cache_dir() == tmp_path / 'xdg' / 'stylelens'
    monkeypatch.setenv('STYLELENS_CACHE', str(_cache))
    a, b = cached_path('http://a.example/x/net.pkl'), cached_path('http://b.example/y/net.pkl')
    assert a != b and a.parent == b.parent == _cache / 'networks' and a.name.endswith('-net.pkl')


def test_fetch_cached_reuses_trusted_copy(server) -> None:
    url = url_of(server)
    first = fetch_cached(url, progress=False)
    assert first.read_bytes() == PAYLOAD and first.parent == cache_dir() / 'networks'
    assert fetch_cached(url, progress=False) == first
    assert len(server.behaviour.requests) == 1
