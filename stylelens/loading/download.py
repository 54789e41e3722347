"""Resumable, checksummed downloads into the stylelens cache, so large pickles are fetched once and verified."""
from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote, urlparse

from stylelens.errors import StylelensError
from stylelens.progress import progress_bar

if TYPE_CHECKING:  # requests is imported only when something is downloaded (it costs 0.1 s at start-up)
    import requests

_MIB = 1 << 20


def cache_dir() -> Path:
    """The cache root: ``$STYLELENS_CACHE``, else ``$XDG_CACHE_HOME/stylelens``, else ``~/.cache/stylelens``."""
    if os.environ.get('STYLELENS_CACHE'):
        return Path(os.environ['STYLELENS_CACHE']).expanduser()
    if os.environ.get('XDG_CACHE_HOME'):
        return Path(os.environ['XDG_CACHE_HOME']).expanduser() / 'stylelens'
    return Path.home() / '.cache' / 'stylelens'


def cached_path(url: str, root: Path | None = None) -> Path:
    """Where ``url`` is cached: ``networks/<url-hash>-<basename>``, so equal basenames of different URLs don't clash."""
    name = re.sub(r'[^A-Za-z0-9._-]', '_', unquote(Path(urlparse(url).path).name)) or 'network.pkl'
    tag = hashlib.sha256(url.encode()).hexdigest()[:10]
    return (root or cache_dir()) / 'networks' / f'{tag}-{name}'


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks so big pickles never sit in memory whole."""
    return _hash_into(path, hashlib.sha256()).hexdigest()


def remembered_sha256(path: Path) -> str:
    """SHA-256 of a local file, remembered in the cache by (absolute path, size, mtime) so a big pickle is hashed
    once, not on every command that records it in a manifest."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f'{path}|{stat.st_size}|{stat.st_mtime_ns}'
    store = cache_dir() / 'file_digests.json'
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if key not in known:
        known = {k: v for k, v in known.items() if not k.startswith(f'{path}|')}
        known[key] = file_sha256(path)
        try:
            _write_json(store, known)
        except OSError:
            pass
    return known[key]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + '.sha256')


def stored_digest(path: Path) -> str | None:
    """The digest recorded next to ``path`` by a download, if the file still has the recorded size."""
    try:
        rec = json.loads(_sidecar(path).read_text())
        return rec['sha256'] if rec['size'] == Path(path).stat().st_size else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + '\n')
    os.replace(tmp, path)


def known_hashes(store: Path | None = None) -> dict[str, dict]:
    """URL -> ``{"sha256", "size"}`` recorded on first download (trust on first use)."""
    try:
        data = json.loads((store or cache_dir() / 'known_hashes.json').read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _session() -> requests.Session:
    import requests

    try:
        version = metadata.version('stylelens')
    except metadata.PackageNotFoundError:
        version = 'dev'
    session = requests.Session()
    session.headers.update({'User-Agent': f'stylelens/{version}', 'Accept-Encoding': 'identity'})
    return session


def _total_from(resp: requests.Response) -> int | None:
    """Full file size from Content-Range (206/416) or Content-Length (200), if the server says."""
    m = re.search(r'/(\d+)\s*$', resp.headers.get('Content-Range', ''))
    if m:
        return int(m.group(1))
    length = resp.headers.get('Content-Length')
    return int(length) if length and length.isdigit() and resp.status_code == 200 else None


def _range_start(resp: requests.Response) -> int | None:
    m = re.match(r'\s*bytes\s+(\d+)-', resp.headers.get('Content-Range', ''))
    return int(m.group(1)) if m else None


class _Interrupted(Exception):
    """The transfer broke off after it started; the ``.part`` file is kept for resuming."""


def _hash_into(path: Path, digest: Any) -> Any:
    with open(path, 'rb') as f:
        while chunk := f.read(_MIB):
            digest.update(chunk)
    return digest


def _transfer(session: requests.Session, url: str, part: Path, timeout: float, progress: bool,
              chunk_size: int) -> Any:
    """Fill ``part`` with the whole file (resuming what is there) and return the running SHA-256 of it."""
    import requests

    for _ in range(3):
        offset = part.stat().st_size if part.exists() else 0
        headers = {'Range': f'bytes={offset}-'} if offset else {}
        with session.get(url, headers=headers, stream=True, timeout=timeout) as resp:
            total = _total_from(resp)
            if resp.status_code == 416:
                if total is not None and total == offset:
                    return _hash_into(part, hashlib.sha256())
                part.unlink()
                continue
            resp.raise_for_status()
            if resp.status_code == 206 and _range_start(resp) != offset:
                part.unlink(missing_ok=True)
                continue
            if resp.status_code != 206:
                offset = 0
            digest = _hash_into(part, hashlib.sha256()) if offset else hashlib.sha256()
            resp.raw.enforce_content_length = False  # keep bytes before a drop; the size check below catches it
            part.parent.mkdir(parents=True, exist_ok=True)
            bar = progress_bar(total, f'Downloading {part.name[:-5]}', progress, initial=offset, unit='B',
                               unit_scale=True)
            try:
                with open(part, 'ab' if offset else 'wb') as out, bar:
                    for chunk in resp.iter_content(chunk_size):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            except requests.RequestException:
                raise _Interrupted('connection lost') from None
            size = part.stat().st_size
            if total is not None and size != total:
                raise _Interrupted(f'got {size} of {total} bytes')
            return digest
    raise StylelensError(f'download of {url} failed: the server keeps rejecting resume requests')


def download(url: str, dest: Path, *, sha256: str | None = None, timeout: float = 30, progress: bool = True,
             chunk_size: int = 1 << 20, hash_store: Path | None = None) -> Path:
    """Download ``url`` to ``dest`` via a resumable ``.part`` file, verifying ``sha256`` or the digest recorded
    for this URL in ``hash_store`` (default ``cache_dir()/known_hashes.json``, which a first download fills)."""
    import requests

    dest = Path(dest)
    part = dest.with_suffix(dest.suffix + '.part')
    store = hash_store or cache_dir() / 'known_hashes.json'
    recorded = known_hashes(store).get(url, {}).get('sha256')
    expected = (sha256 or recorded or '').lower() or None
    try:
        with _session() as session:
            digest = _transfer(session, url, part, timeout, progress, chunk_size).hexdigest()
    except requests.HTTPError as exc:
        r = exc.response
        raise StylelensError(f"download of {url} failed: HTTP {r.status_code} {r.reason or ''}".rstrip()) from None
    except requests.Timeout:
        raise StylelensError(f'download of {url} failed: no answer within {timeout:g} s (time-out)') from None
    except _Interrupted as exc:
        kept = part.stat().st_size if part.exists() else 0
        raise StylelensError(f'download of {url} was interrupted after {kept} bytes ({exc}); '
                             f'run the command again to resume') from None
    except requests.ConnectionError as exc:
        reason = getattr(exc.args[0], 'reason', exc.args[0]) if exc.args else exc
        reason = str(reason).split('>: ', 1)[-1].splitlines()[0]
        raise StylelensError(f'download of {url} failed: could not connect ({reason})') from None
    except requests.RequestException as exc:
        raise StylelensError(f'download of {url} failed: {exc}') from None
    if expected and digest != expected:
        part.unlink(missing_ok=True)
        origin = '' if sha256 else f' (recorded on first download in {store})'
        raise StylelensError(f'checksum mismatch for {url}: expected sha256 {expected}{origin}, got {digest}; '
                             f'the downloaded file was deleted')
    size = part.stat().st_size
    os.replace(part, dest)
    _write_json(_sidecar(dest), {'sha256': digest, 'size': size, 'url': url})
    hashes = known_hashes(store)
    if hashes.get(url) != {'sha256': digest, 'size': size}:
        hashes[url] = {'sha256': digest, 'size': size}
        _write_json(store, hashes)
    return dest


def fetch_cached(url: str, *, sha256: str | None = None, root: Path | None = None, progress: bool = True,
                 timeout: float = 30) -> Path:
    """Return the cached copy of ``url``, downloading it first unless a copy with a matching digest is there."""
    root = root or cache_dir()
    dest, store = cached_path(url, root), root / 'known_hashes.json'
    expected = (sha256 or known_hashes(store).get(url, {}).get('sha256') or '').lower() or None
    if dest.is_file():
        have = stored_digest(dest)
        if have is None:
            have = file_sha256(dest)
            _write_json(_sidecar(dest), {'sha256': have, 'size': dest.stat().st_size, 'url': url})
        if expected is None or have == expected:
            return dest
    return download(url, dest, sha256=sha256, timeout=timeout, progress=progress, hash_store=store)


def fetch_or_explain(url: str, sha256: str | None, what: str, how_to_get: Callable[[], str],
                     progress: bool = True) -> Path:
    """`fetch_cached(url)`, with a failed download turned into one line naming `what` is missing, the cause, and
    `how_to_get()` (how to fetch the file by hand), for weight files a command needs."""
    try:
        return fetch_cached(url, sha256=sha256, progress=progress)
    except StylelensError as error:
        reason = str(error).removeprefix(f'download of {url} failed: ')
        raise StylelensError(f'{what} are not here and the download failed ({reason}): {how_to_get()}') from None
