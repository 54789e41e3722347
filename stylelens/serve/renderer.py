"""One open network and what the page asks of it, through the library's own functions: source items to ws
(stylelens.sources), style mixing (stylelens.mixing), directions (stylelens.directions, stylelens.traversal), the
StyleGAN3 transform (stylelens.input_transform), synthesis and uint8 conversion (stylelens.generation, outputs) and
activations (stylelens.probes)."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from stylelens.directions.format import save_directions
from stylelens.directions.sefa import sefa
from stylelens.directions.spec import Direction, direction_from_spec
from stylelens.errors import StylelensError
from stylelens.generation import synthesize
from stylelens.input_transform import with_input_transform
from stylelens.loading.loaded import LoadedNetwork
from stylelens.mixing import Donor, block_owned, grid_image, mix_ws, parse_layers, preset_blocks, render_grids
from stylelens.outputs import to_uint8
from stylelens.probes import hook_names, probe, resolve_name
from stylelens.serve.files import ServedFiles
from stylelens.serve.state import ViewState
from stylelens.sources import Source, resolve_sources
from stylelens.summary import is_alias_free
from stylelens.traversal import shift_ws

PCA_SAMPLES = 10_000      # as `traverse --pca-samples`: sigma along a direction comes from this PCA (cached)
GRID_BATCH = 8            # as `mix --batch`


@dataclass
class Frame:
    """One forward pass: the uint8 image [H, W, C], the recorded activation of the chosen hook point (None when no
    hook point is chosen), and the seconds it took."""

    image: np.ndarray
    activation: Any
    seconds: float


class Renderer:
    """Renders page states of one network; the last forward pass is kept, so browsing its channels is free."""

    def __init__(self, loaded: LoadedNetwork, files: ServedFiles, work_dir: Path, precision: str = 'fp32') -> None:
        self.loaded = loaded
        self.G = loaded.G
        self.files = files
        self.work_dir = work_dir
        self.precision = precision
        self._directions: dict[str, Direction] = {}
        self._last: tuple[str, Frame] | None = None

    def info(self) -> dict[str, Any]:
        """What the page needs to build its controls for this network."""
        G = self.G
        classes = self.loaded.class_names or [str(i) for i in range(G.c_dim)]
        return dict(resolution=G.img_resolution, channels=G.img_channels, z_dim=G.z_dim, w_dim=G.w_dim,
                    num_ws=G.num_ws, c_dim=G.c_dim, classes=classes, alias_free=is_alias_free(G),
                    blocks=block_owned(G), presets=preset_blocks(G), hooks=hook_names(G),
                    direction_files=sorted(self.files.directions),
                    w_files=self.files.w_listing(w_dim=G.w_dim, num_ws=G.num_ws))

    # ---------------------------------------------------------------------------------------------- latents

    def sources(self, spec: str, state: ViewState) -> list[Source]:
        """Labelled ws of a source list, with the state's truncation and class (W files as stored)."""
        if state.truncation_cutoff is not None and state.truncation_cutoff < 0:
            raise StylelensError(f'bad truncation cutoff {state.truncation_cutoff}: the number of ws to truncate, >= 0')
        return resolve_sources(self.G, self.files.sources(spec), truncation_psi=state.truncation_psi,
                               truncation_cutoff=state.truncation_cutoff, class_idx=state.class_idx,
                               class_names=self.loaded.class_names)

    def latent(self, spec: str, state: ViewState, what: str) -> Source:
        """The one latent a control names (a seed or one row of a W file)."""
        found = self.sources(spec, state)
        if len(found) != 1:
            raise StylelensError(f'the {what} must be one seed or one W file row like w:proj.npz@0 (got {spec!r})')
        return found[0]

    def direction(self, spec: str, class_idx: str | None) -> Direction:
        """`pca:K`, `sefa:K` or `NAME.npz:K` (a direction file given at start-up) as a Direction, cached."""
        key = f'{spec}|{class_idx}'
        if key not in self._directions:
            kind, _, index = spec.partition(':')
            if kind == 'sefa':
                spec = f'{self.sefa_file()}:{index}'
            elif kind.endswith('.npz'):
                spec = f'{self.files.direction_path(kind)}:{index}'
            self._directions[key] = direction_from_spec(
                self.G, spec, num_samples=PCA_SAMPLES, class_idx=class_idx, class_names=self.loaded.class_names,
                network_sha256=self.loaded.source.sha256)
        return self._directions[key]

    def sefa_file(self) -> Path:
        """All SeFa directions of this network as a direction file (what `stylelens directions sefa` writes)."""
        path = self.work_dir / f'sefa-{self.loaded.source.sha256[:16]}.npz'
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_directions(path, sefa(self.G, network_sha256=self.loaded.source.sha256))
        return path

    def ws(self, state: ViewState) -> torch.Tensor:
        """The state's ws [1, num_ws, w_dim]: the base, its mixed layers from the donor, then moved along the
        direction (on the direction's own layers unless others are chosen)."""
        ws = self.latent(state.base, state, 'base latent').ws
        if state.mixing:
            donor = self.latent(state.mix_source, state, 'mixing source')
            ws = mix_ws(ws, [Donor(donor.label, donor.ws, parse_layers(self.G, state.mix_layers))])
        if state.moving:
            direction = self.direction(state.direction, state.class_idx)
            layers = parse_layers(self.G, state.direction_layers) if state.direction_layers else direction.layers
            ws = shift_ws(self.G, ws[None], direction.vector * direction.scale, [state.direction_value], layers)[0, 0]
        return ws[None]

    # ---------------------------------------------------------------------------------------------- renders

    def generator(self, state: ViewState) -> torch.nn.Module:
        """G, or for a translated or rotated StyleGAN3 a copy with that input transform (weights shared)."""
        if not state.transformed:
            return self.G
        return with_input_transform(self.G, (state.translate_x, state.translate_y), state.rotate)

    def render(self, state: ViewState) -> Frame:
        """The live image of a state and the chosen hook point's activation, from one forward pass; a state that
        differs from the last only in how activations are drawn reuses that pass."""
        key = state.forward_key()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        start = time.perf_counter()
        G = self.generator(state)
        hook = resolve_name(self.G, state.hook) if state.hook else None
        in_mapping = hook is not None and hook.split('.')[0] == 'mapping'  # the mapping runs on G, not on a copy
        if in_mapping and state.base.startswith('w:'):
            raise StylelensError(f'hook point {hook} does not run for a W file latent (its ws are used as stored): '
                                 'pick a synthesis hook point, or a seed')
        with _first_record(self.G if in_mapping else G, hook) as rec:
            ws = self.ws(state)
            if state.noise_mode == 'random':  # as `generate`: random noise seeded by the (first) seed
                torch.manual_seed(int(state.base) if state.base.isdigit() else 0)
            image = to_uint8(synthesize(G, ws, noise_mode=state.noise_mode, precision=self.precision))[0]
        frame = Frame(image, rec.get(hook), time.perf_counter() - start)
        self._last = (key, frame)
        return frame

    def grid(self, state: ViewState) -> np.ndarray:
        """The small mixing grid as `stylelens mix --rows R --cols C --styles|--blocks L` writes grid.png: rows
        default to the base, columns to the mixing source."""
        rows = self.sources(state.grid_rows or state.base, state)
        cols = self.sources(state.grid_cols or state.mix_source or state.base, state)
        grid = render_grids(self.G, torch.stack([s.ws for s in rows]), torch.stack([s.ws for s in cols]),
                            [parse_layers(self.G, state.mix_layers)], row_labels=[s.label for s in rows],
                            col_labels=[s.label for s in cols], noise_mode=state.noise_mode, batch_size=GRID_BATCH,
                            precision=self.precision)[0]
        return grid_image(grid).numpy()


@contextlib.contextmanager
def _first_record(model: torch.nn.Module, hook: str | None) -> Iterator[dict]:
    """probe() on one hook point (none: nothing recorded) keeping its first output: the base latent's, which is
    mapped before the mixing source."""
    first: dict = {}
    if hook is None:
        yield first
        return
    with probe(model, [hook], on_record=first.setdefault):
        yield first
