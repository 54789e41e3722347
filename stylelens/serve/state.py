"""What the page shows, as one plain record: every control of the explorer, in the CLI's own vocabulary (source
items `12` or `w:NAME@K`, layer specs as in `mix`, direction specs as in `traverse`), so a state is also a command."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal, Optional

NORMS = ('layer', 'channel', 'symmetric')
VIEWS = ('map', 'spectrum')
MEAN_CHANNEL = -1          # `channel` value that shows the mean |x| over all channels

# Fields that only change how a recorded activation is drawn: a change to them needs no forward pass.
VIEW_FIELDS = ('channel', 'norm', 'view')
# Fields the live image does not depend on (only the grid does).
GRID_FIELDS = ('grid_rows', 'grid_cols')


@dataclass
class ViewState:
    """The explorer's controls: latent, mixing, direction, StyleGAN3 transform and the activation view."""

    network: str
    base: str = '0'                          # a seed, or w:NAME@K (row K of a W file the server offers)
    truncation_psi: float = 1.0
    truncation_cutoff: Optional[int] = None
    class_idx: Optional[str] = None           # index or class name, for conditional networks
    noise_mode: Literal['const', 'random', 'none'] = 'const'
    mix_source: Optional[str] = None          # donor of the mixed layers (a seed or w:NAME@K); None: no mixing
    mix_layers: str = 'coarse'                # ws indices, blocks/layers or a preset, as `mix --styles/--blocks`
    grid_rows: str = ''                       # the small grid's rows and columns (source lists, as `mix --rows`)
    grid_cols: str = ''
    direction: Optional[str] = None           # pca:K, sefa:K or NAME.npz:K (a direction file named at start-up)
    direction_value: float = 0.0              # in standard deviations of W along the direction
    direction_layers: Optional[str] = None    # ws the direction moves (None: the direction's own, PCA: all)
    translate_x: float = 0.0                  # StyleGAN3 only: image translation and rotation (gen_images.py)
    translate_y: float = 0.0
    rotate: float = 0.0
    hook: Optional[str] = None                # hook point whose activations are shown
    channel: int = MEAN_CHANNEL
    norm: Literal['layer', 'channel', 'symmetric'] = 'layer'
    view: Literal['map', 'spectrum'] = 'map'

    @property
    def mixing(self) -> bool:
        """Whether a donor supplies some layers."""
        return bool(self.mix_source)

    @property
    def moving(self) -> bool:
        """Whether a direction moves the latent."""
        return bool(self.direction) and self.direction_value != 0

    @property
    def transformed(self) -> bool:
        """Whether the StyleGAN3 input transform differs from the identity."""
        return (self.translate_x, self.translate_y, self.rotate) != (0.0, 0.0, 0.0)

    def forward_key(self) -> str:
        """A canonical text of what one forward pass computes (the image and the recorded activation): states with
        equal keys differ only in how the activation is drawn or in the grid."""
        ignored = (*VIEW_FIELDS, *GRID_FIELDS)
        return json.dumps({k: v for k, v in dataclasses.asdict(self).items() if k not in ignored}, sort_keys=True)
