"""The files the page may name: W files from the folder given at start-up or uploaded, and direction files given at
start-up. The page names them by file name only; nothing else on disk can be reached, and nothing is unpickled."""
from __future__ import annotations

import re
from pathlib import Path

from stylelens.errors import StylelensError
from stylelens.latents import load_ws_file
from stylelens.sources import parse_source_items

W_SUFFIXES = ('.npz', '.npy')
MAX_UPLOAD_BYTES = 64 * 2**20
_SAFE_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,99}', re.ASCII)


class ServedFiles:
    """W files (start-up folder, then uploads) and direction files, each known by its file name."""

    def __init__(self, w_folder: Path | None, uploads: Path, direction_files: list[Path]) -> None:
        self.w_folder = w_folder
        self.uploads = uploads
        self.directions = {path.name: path.resolve() for path in direction_files}

    def w_files(self) -> dict[str, Path]:
        """Every offered W file by name; an upload never shadows a start-up file of the same name."""
        found: dict[str, Path] = {}
        for folder in (self.uploads, self.w_folder):
            if folder is not None and folder.is_dir():
                found.update((p.name, p.resolve()) for p in sorted(folder.iterdir())
                             if p.suffix in W_SUFFIXES and p.is_file() and _SAFE_NAME.fullmatch(p.name))
        return found

    def w_path(self, name: str) -> Path:
        """The file behind an offered W file name; any other name is a one-line error listing the offered ones."""
        files = self.w_files()
        if name not in files:
            offered = ', '.join(files) or 'none: start the server with --wdir DIR, or upload one'
            raise StylelensError(f'unknown W file {name!r}: offered W files are {offered}')
        return files[name]

    def direction_path(self, name: str) -> Path:
        """The direction file given at start-up under this name, else a one-line error."""
        if name not in self.directions:
            offered = ', '.join(self.directions) or 'none: start the server with --directions FILE'
            raise StylelensError(f'unknown direction file {name!r}: offered direction files are {offered}')
        return self.directions[name]

    def sources(self, spec: str, copied: bool = False) -> str:
        """A source list of the page (`12,w:proj.npz@0`) in the CLI's form: W file names become their paths (with
        `copied`, `w/NAME`: the copy a snapshot keeps beside its commands), seeds stay as they are."""
        items = []
        for item in parse_source_items(spec):
            if item.startswith('w:'):
                name, at, row = item[2:].partition('@')
                path = self.w_path(name)
                item = f"w:{Path('w') / name if copied else path}{at}{row}"
            items.append(item)
        return ','.join(items)

    def store_upload(self, name: str, data: bytes, *, w_dim: int, num_ws: int) -> int:
        """Check an uploaded W file (plain npy/npz, allow_pickle=False, shape for this network) and keep it under
        its name; returns its row count. A bad file is refused in one line and leaves nothing behind."""
        if not _SAFE_NAME.fullmatch(name) or Path(name).suffix not in W_SUFFIXES:
            raise StylelensError(f'bad W file name {name!r}: use letters, digits, ".", "_" or "-", ending in .npz or '
                                 '.npy')
        if len(data) > MAX_UPLOAD_BYTES:
            raise StylelensError(f'W file {name!r} is {len(data)} bytes: at most {MAX_UPLOAD_BYTES} are accepted')
        incoming = self.uploads / '.incoming'
        incoming.mkdir(parents=True, exist_ok=True)
        staged = incoming / name
        staged.write_bytes(data)
        try:
            rows = load_ws_file(staged, w_dim=w_dim, num_ws=num_ws).shape[0]
        except StylelensError as err:
            staged.unlink(missing_ok=True)
            raise StylelensError(str(err).replace(str(staged), name)) from None
        staged.replace(self.uploads / name)
        return rows

    def w_listing(self, *, w_dim: int, num_ws: int) -> list[dict]:
        """Every offered W file with its row count for this network, or the one-line reason it does not fit."""
        listing = []
        for name, path in self.w_files().items():
            try:
                listing.append(dict(name=name, rows=int(load_ws_file(path, w_dim=w_dim, num_ws=num_ws).shape[0])))
            except StylelensError as err:
                listing.append(dict(name=name, rows=0, error=str(err)))
        return listing
