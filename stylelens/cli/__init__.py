"""The `stylelens` command: a click group whose verbs are imported only when run, so start-up stays lean."""
from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
from types import ModuleType

import click

from stylelens import __version__
from stylelens.cli.ranks import all_ranks, check_sharded
from stylelens.errors import StylelensError

COMMANDS = {
    'info': ('stylelens.cli.info', 'info', 'Summarise a network: dims, blocks, ws indices, parameter counts.'),
    'generate': ('stylelens.cli.generate', 'generate', 'Generate images for seeds (official conventions).'),
    'networks': ('stylelens.cli.networks', 'networks', 'List known networks (registry) and what is cached.'),
    'arch': ('stylelens.cli.arch', 'arch', 'Print the module tree with output shapes and parameter counts.'),
    'weights': ('stylelens.cli.weights', 'weights', "Print, plot or dump a layer's weights (or all of them)."),
    'activations': ('stylelens.cli.activations', 'activations',
                    'Dump and plot what every block produces, per seed (G) or per image (D).'),
    'mix': ('stylelens.cli.mix', 'mix', 'Style mixing: grids of rows x cols, or one base with several donors.'),
    'mix-study': ('stylelens.cli.mix', 'mix_study', 'One mixing grid per block set, stacked with captions.'),
    'interpolate': ('stylelens.cli.interpolate', 'interpolate', 'Walk between seeds in Z or W: GIF, MP4 or strip.'),
    'traverse': ('stylelens.cli.traverse', 'traverse', 'Move one seed along a W direction (PCA, random, file).'),
    'directions': ('stylelens.cli.directions', 'directions', 'Find W directions (PCA, SeFa, supervised); score them.'),
    'styles': ('stylelens.cli.styles', 'styles', 'Dump the S space per seed; rank single style channels.'),
    'patch': ('stylelens.cli.patch', 'patch', 'Activation patching: which hook points carry the difference.'),
    'attribute': ('stylelens.cli.attribute', 'attribute', 'Gradient x activation or integrated gradients.'),
    'ablate': ('stylelens.cli.ablate', 'ablate', 'Zero or mean-ablate channels; a table of metric changes.'),
    'data': ('stylelens.cli.data', 'data', 'Download CIFAR-10, MNIST, Fashion-MNIST; inspect a --data spec.'),
    'train': ('stylelens.cli.train', 'train', 'Train a GAN from scratch: samples, CSV logs, plots, checkpoints.'),
    'classifier': ('stylelens.cli.classifier', 'classifier', 'Train a classifier that scores generators by class.'),
    'modes': ('stylelens.cli.modes', 'modes', 'Class coverage of a generator: histogram, JS/KL, missing modes.'),
    'sweep': ('stylelens.cli.sweep', 'sweep', 'Train one run per setting (LR, optimizer, depths) and name the best.'),
    'metrics': ('stylelens.cli.metrics', 'metrics', 'FID, KID and IS of a generator or image folder vs real data.'),
    'convert': ('stylelens.cli.convert', 'convert', 'Write a network as a rosinality checkpoint, safetensors or pickle.'),
    'project': ('stylelens.cli.project', 'project', 'Project an image into W or W+ (NVIDIA projector.py, on CPU).'),
    'serve': ('stylelens.cli.serve', 'serve', 'Explore a network in the browser (latents, mixing, activations).'),
}


def import_frozen(module: str) -> ModuleType:
    """Import a verb's module with the cyclic garbage collector paused, then freeze what exists: importing torch
    makes about a million long-lived objects, and the full collections it would trigger on the way (and later, in the
    verb) scan them all for nothing, about 0.2 s of every run."""
    gc.disable()
    try:
        return importlib.import_module(module)
    finally:
        gc.freeze()
        gc.enable()


class LazyGroup(click.Group):
    """Imports a verb's module only when that verb runs, and turns StylelensError into one clean line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        check_sharded(name)
        module, attr, _ = COMMANDS[name]
        return getattr(import_frozen(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section('Commands'):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        with all_ranks():
            try:
                return super().invoke(ctx)
            except StylelensError as err:
                raise click.ClickException(str(err)) from None


@click.group(cls=LazyGroup, context_settings=dict(help_option_names=['-h', '--help'], show_default=True))
@click.version_option(__version__, prog_name='stylelens')
def cli() -> None:
    """Take StyleGAN generators apart: load official pickles safely, generate, probe and mix styles.

    \b
    Examples:
      stylelens info --network demo
      stylelens mix --network demo --rows 85,100,75 --cols 55,821 --styles 0-6 --outdir out/mix
      stylelens generate --network demo --seeds 0-7 --outdir out/generate
      stylelens train --model dcgan --data cifar10:cifar-10-python.tar.gz:dog --epochs 5 --outdir runs/dog
    """


def main() -> None:
    """Console-script entry point. Once the verb is done, the process ends without the interpreter's teardown:
    tearing down torch's modules alone takes about 0.6 s, longer than many verbs take for their own work."""
    try:
        cli(prog_name='stylelens', args=sys.argv[1:])
        code: object = 0
    except SystemExit as done:  # click ends every run with one, carrying the exit status
        code = done.code
    quick_exit(code)


def quick_exit(code: object) -> None:
    """Exit with `code` as `sys.exit` would (None is 0, a message goes to stderr and is 1), after running the atexit
    handlers and flushing stdout and stderr, but without finalizing every module."""
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # what a normal exit would run first (logging, multiprocessing, torch)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`stylelens networks | head -1`) or stream
            pass
    os._exit(code)
