"""The explorer behind the page: which networks may be opened, one Renderer per open network, and the jobs the
page's requests become (render, grid, snapshot, W file upload), each answered as plain JSON with PNGs inline."""
from __future__ import annotations

import base64
import io
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stylelens.errors import StylelensError
from stylelens.loading.loaded import open_network
from stylelens.loading.registry import list_entries
from stylelens.outputs import PNG_COMPRESS_LEVEL
from stylelens.serve.files import ServedFiles
from stylelens.serve.renderer import Renderer
from stylelens.serve.snapshot import SnapshotPlan, write_snapshot
from stylelens.serve.state import ViewState
from stylelens.serve.views import activation_planes, activation_view

OPEN_NETWORKS = 2         # networks kept loaded at once (switching back and forth stays instant)


class NotAllowed(StylelensError):
    """A network neither named at start-up nor in the registry: the server refuses to open it."""


@dataclass
class ExplorerConfig:
    """What `stylelens serve` was started with: the networks (the first opens at start), the W file folder, the
    direction files, where snapshots and uploads go, the device and the render precision."""

    networks: list[str]
    w_folder: Path | None = None
    direction_files: list[Path] = field(default_factory=list)
    outdir: Path = Path('out/serve')
    device: str = 'auto'
    precision: str = 'fp32'


def png_data_url(image: np.ndarray) -> str:
    """An [H, W, C] uint8 image as a `data:image/png;base64,...` URL (zlib level 1, as outputs.save_png)."""
    array = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format='PNG', compress_level=PNG_COMPRESS_LEVEL)
    return 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


class Explorer:
    """Networks, files and renders of one server. Its job methods run on the render worker only."""

    def __init__(self, config: ExplorerConfig) -> None:
        self.config = config
        self.files = ServedFiles(config.w_folder, config.outdir / 'uploads', config.direction_files)
        self._renderers: dict[str, Renderer] = {}
        self._snapshot_numbers = itertools.count(1)

    def allowed(self) -> list[str]:
        """Networks the page may open: those named at start-up, then the registry's."""
        return list(dict.fromkeys([*self.config.networks, *(entry.name for entry in list_entries())]))

    def renderer(self, network: str) -> Renderer:
        """The open network's renderer, opening it (and closing the least recently used) when needed."""
        if network not in self.allowed():
            raise NotAllowed(f'network {network!r} was not named at start-up and is not in the registry: choose one '
                             f"of {', '.join(self.allowed())}")
        renderer = self._renderers.pop(network, None)
        if renderer is None:
            loaded = open_network(network, self.config.device)
            renderer = Renderer(loaded, self.files, self.config.outdir / 'directions', self.config.precision)
        self._renderers[network] = renderer
        while len(self._renderers) > OPEN_NETWORKS:
            self._renderers.pop(next(iter(self._renderers)))
        return renderer

    def info(self, network: str) -> dict[str, Any]:
        """The network's dims, blocks, presets, hook points, classes, W files and direction files."""
        return dict(network=network, **self.renderer(network).info())

    def render(self, state: ViewState) -> dict[str, Any]:
        """The live image, and the chosen hook point's activation view with its numbers."""
        frame = self.renderer(state.network).render(state)
        result: dict[str, Any] = dict(image=png_data_url(frame.image), seconds=frame.seconds)
        if frame.activation is not None:
            planes = activation_planes(frame.activation)
            picture, stats = activation_view(planes, state.channel, state.norm, state.view)
            result['activation'] = dict(image=png_data_url(picture), **stats)
        return result

    def grid(self, state: ViewState) -> dict[str, Any]:
        """The small mixing grid (as `stylelens mix` writes grid.png)."""
        start = time.perf_counter()
        image = self.renderer(state.network).grid(state)
        return dict(image=png_data_url(image), seconds=time.perf_counter() - start)

    def upload(self, network: str, name: str, data: bytes) -> dict[str, Any]:
        """Keep an uploaded W file that fits the network (read without pickle); a bad one is refused in one line."""
        G = self.renderer(network).G
        rows = self.files.store_upload(name, data, w_dim=G.w_dim, num_ws=G.num_ws)
        return dict(name=name, rows=rows)

    def snapshot(self, state: ViewState) -> dict[str, Any]:
        """Write the state as CLI commands with the page's images and a manifest into a new numbered folder."""
        renderer = self.renderer(state.network)
        frame = renderer.render(state)
        images = {'image.png': frame.image}
        if state.mixing:
            images['grid.png'] = renderer.grid(state)
        if frame.activation is not None:
            images['activation.png'] = activation_view(activation_planes(frame.activation), state.channel,
                                                       state.norm, state.view)[0]
        folder = self._new_snapshot_folder()
        plan = SnapshotPlan(state, state.network, self.files)
        extra = write_snapshot(folder, plan, images, renderer.loaded.manifest(), frame.seconds)
        return dict(folder=str(folder), **extra)

    def _new_snapshot_folder(self) -> Path:
        """outdir/snapshots/snapshot-NNNN, the first number not taken."""
        root = self.config.outdir / 'snapshots'
        root.mkdir(parents=True, exist_ok=True)
        while True:
            folder = root / f'snapshot-{next(self._snapshot_numbers):04d}'
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                pass
