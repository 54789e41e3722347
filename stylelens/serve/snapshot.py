"""The snapshot button: the page's state written as the equivalent CLI commands (commands.sh), the images the page
shows, the W and direction files it used, and a manifest.json saying how each file was made."""
from __future__ import annotations

import dataclasses
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylelens.mixing import PRESET_NAMES
from stylelens.outputs import atomic_write_text, save_png, seed_filename, write_manifest
from stylelens.serve.files import ServedFiles
from stylelens.serve.state import ViewState
from stylelens.sources import parse_source_items

COMMANDS_FILE = 'commands.sh'


@dataclass
class Command:
    """One CLI command, what it writes that matches the page, whether that file equals the page's pixels, and
    whether it is the live image's command."""

    argv: list[str]
    reproduces: str
    exact: bool
    of_image: bool = False

    def line(self) -> str:
        """The command as one shell line."""
        return shlex.join(['stylelens', *self.argv])


class SnapshotPlan:
    """The commands equivalent to a state, run from the snapshot folder (W and direction files copied into it)."""

    def __init__(self, state: ViewState, network: str, files: ServedFiles) -> None:
        self.state = state
        self.files = files
        self.network = str(Path(network).resolve()) if Path(network).exists() else network
        self.copies: dict[str, Path] = {}
        self.notes: list[str] = []   # what no command reproduces, and why

    def sources(self, spec: str) -> str:
        """A source list with W files as their copies under w/ (noted for copying)."""
        for item in parse_source_items(spec):
            if item.startswith('w:'):
                name = item[2:].partition('@')[0]
                self.copies[f'w/{name}'] = self.files.w_path(name)
        return self.files.sources(spec, copied=True)

    def common(self) -> list[str]:
        """--network and the latent options every image verb shares."""
        s = self.state
        argv = ['--network', self.network, '--trunc', f'{s.truncation_psi:g}']
        argv += ['--trunc-cutoff', str(s.truncation_cutoff)] if s.truncation_cutoff is not None else []
        argv += ['--class', s.class_idx] if s.class_idx is not None else []
        return argv + (['--noise-mode', s.noise_mode] if s.noise_mode != 'const' else [])

    def layer_option(self, spec: str) -> list[str]:
        """A layer spec as `mix` spells it: --preset, --blocks for names, --styles for indices."""
        if spec in PRESET_NAMES:
            return ['--preset', spec]
        return ['--blocks' if any(c.isalpha() for c in spec) else '--styles', spec]

    def commands(self) -> list[Command]:
        """The image's commands (the last of them writes the image), then the grid's and the activations'."""
        s = self.state
        commands = self.image_commands()
        if s.mixing:
            commands.append(Command(['mix', *self.common(), '--rows', self.sources(s.grid_rows or s.base),
                                     '--cols', self.sources(s.grid_cols or s.mix_source),
                                     *self.layer_option(s.mix_layers), '--outdir', 'cli/grid'],
                                    'cli/grid/grid.png = grid.png', self.state.noise_mode != 'random'))
        if s.hook and s.base.isdigit() and not (s.mixing or s.moving or s.transformed):
            commands.append(Command(['activations', *self.common(), '--seeds', s.base, '--layers', s.hook,
                                     '--outdir', 'cli/activations'],
                                    f'cli/activations: the arrays of {s.hook} behind activation.png', True))
        return commands

    def image_commands(self) -> list[Command]:
        """traverse (a direction; SeFa directions written first), mix (a donor, or a W file as its own row and
        column) or generate (a seed, StyleGAN3 transform included); exact where the verb covers the whole state."""
        s = self.state
        if s.moving:
            return self.traverse_commands()
        if s.transformed and (s.mixing or not s.base.isdigit()):
            self.notes.append('mix has no --translate/--rotate: its image is the untransformed one')
        if s.mixing:
            argv = ['mix', *self.common(), '--base', self.sources(s.base), '--source',
                    f'{s.mix_layers}={self.donor(s.mix_source)}', '--outdir', 'cli/mix']
            return [Command(argv, 'cli/mix/mix.png = image.png', self.mix_exact(), True)]
        if s.base.startswith('w:'):
            name, _, row = s.base[2:].partition('@')
            label = f'{Path(name).stem}.{row or 0}'
            argv = ['mix', *self.common(), '--rows', self.sources(s.base), '--cols', self.sources(s.base),
                    '--styles', '0', '--outdir', 'cli/w']
            return [Command(argv, f'cli/w/{label}-{label}.png = image.png', self.mix_exact(), True)]
        argv = ['generate', *self.common(), '--seeds', s.base, '--outdir', 'cli/generate']
        if s.transformed:
            argv += ['--translate', f'{s.translate_x:g},{s.translate_y:g}', '--rotate', f'{s.rotate:g}']
        return [Command(argv, f'cli/generate/{seed_filename(int(s.base))} = image.png', True, True)]

    def mix_exact(self) -> bool:
        """Whether `mix` gives the page's pixels: it has no StyleGAN3 transform and does not seed random noise."""
        return not self.state.transformed and self.state.noise_mode != 'random'

    def donor(self, spec: str) -> str:
        """A mixing source as `mix --source` names it: seed:N or w:FILE@K."""
        return self.sources(spec) if spec.startswith('w:') else f'seed:{spec}'

    def traverse_commands(self) -> list[Command]:
        """`traverse` with one step at the slider's value, whose strip figure shows the image (for a seed, without
        mixing or transform); SeFa directions are written to a direction file first, as the page computes them."""
        s = self.state
        if not s.base.isdigit():
            self.notes.append('no command renders image.png: traverse moves seeds, and the base is a W file')
            return []
        if s.mixing or s.transformed:
            self.notes.append('traverse neither mixes nor transforms: its strip shows the base seed moved alone')
        kind, _, index = s.direction.partition(':')
        commands = []
        if kind.endswith('.npz'):
            self.copies[f'directions/{kind}'] = self.files.direction_path(kind)
            direction = f'directions/{kind}:{index}'
        elif kind == 'sefa':
            commands.append(Command(['directions', 'sefa', '--network', self.network, '--figure-rows', '0',
                                     '--out', 'cli/sefa.npz'], 'cli/sefa.npz: the SeFa directions of the page', True))
            direction = f'cli/sefa.npz:{index}'
        else:
            direction = s.direction
        value = f'{s.direction_value:g}'
        layers = ['--layers', s.direction_layers] if s.direction_layers else []
        argv = ['traverse', *self.common(), '--seed', s.base, '--direction', direction, '--range', f'{value},{value}',
                '--steps', '1', *layers, '--out', 'cli/traverse.png']
        return [*commands, Command(argv, 'cli/traverse.png shows image.png in a labelled figure', False, True)]


def write_snapshot(folder: Path, plan: SnapshotPlan, images: dict[str, np.ndarray], network: dict,
                   seconds: float) -> dict:
    """Write the images, the copied inputs, commands.sh and manifest.json into `folder`; returns the manifest's
    extra (files and commands)."""
    folder.mkdir(parents=True, exist_ok=True)
    commands = plan.commands()
    for relative, source in plan.copies.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / relative)
    for name, image in images.items():
        save_png(image, folder / name)
    script = ['#!/usr/bin/env bash', '# The explorer state as CLI commands; run from this folder.', 'set -euo pipefail',
              'cd "$(dirname "$0")"']
    script += [f'# note: {note}' for note in plan.notes]
    for command in commands:
        script += [f'# {command.reproduces}' + ('' if command.exact else ' (not pixel-exact)'), command.line()]
    atomic_write_text(folder / COMMANDS_FILE, '\n'.join(script) + '\n')
    (folder / COMMANDS_FILE).chmod(0o755)
    extra = dict(files=[*images, *plan.copies, COMMANDS_FILE],
                 commands=[dict(command=c.line(), reproduces=c.reproduces, exact=c.exact) for c in commands],
                 image_reproduced_exactly=any(c.exact and c.of_image for c in commands), notes=plan.notes,
                 render_seconds=seconds)
    write_manifest(folder, command='serve snapshot', options=dataclasses.asdict(plan.state), network=network,
                   extra=extra)
    return extra
