"""The real `stylelens` console script, run as subprocesses, each in its own temporary directory (offline).

Each process spends most of its time importing torch, so the `runs` fixture starts every command line of RUNS once,
a few at a time in parallel, and the tests below check one result each. In RUNS, `{oracle}` stands for the oracle
directory and `{inputs}` for the input files `prepare_inputs` writes.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylelens
from conftest import ORACLE_DIR, tiny_snapshot_path
from stylelens.cli import COMMANDS
from stylelens.latents import seeds_to_z
from stylelens.outputs import to_uint8

DEMO_SEEDS = [0, 1, 2, 5]
VERBS = sorted(COMMANDS)  # what `stylelens --help` must list, and each must have an example in its own --help


def stylelens_cli(*args: str) -> list[str]:
    return ['stylelens', *args]


def generate(*args: str) -> list[str]:
    return stylelens_cli('generate', *args, '--outdir', 'out')


RUNS = {
    'help': stylelens_cli('--help'),
    'python -m': [sys.executable, '-m', 'stylelens', '--help'],
    'networks': stylelens_cli('networks'),
    'info': stylelens_cli('info'),
    'info --json': stylelens_cli('info', '--json'),
    'generate': generate('--seeds', '0-2,5', '--save-ws'),
    'gray': generate('--network', '{inputs}/gray.pkl', '--seeds', '3'),
    'rgba': generate('--network', '{inputs}/rgba.pkl', '--seeds', '3'),
    'oracle uncond': generate('--network', '{oracle}/sg2_uncond64.pkl', '--seeds', '0-3', '--trunc', '0.7'),
    'oracle cond, no class': generate('--network', '{oracle}/sg2_cond32.pkl', '--seeds', '0'),
    'oracle cond, class 2': generate('--network', '{oracle}/sg2_cond32.pkl', '--seeds', '2', '--class', '2',
                                     '--trunc', '0.7'),
    **{f'{verb} --help': stylelens_cli(verb, '--help') for verb in VERBS},
}
# name -> (command line, text its error line must contain)
BAD_INPUTS = {
    'bad seeds': (generate('--seeds', '5-x'), "bad --seeds '5-x'"),
    'missing network': (generate('--network', 'does-not-exist', '--seeds', '0'), 'does-not-exist'),
    'png network': (generate('--network', '{inputs}/image.png', '--seeds', '0'), 'PNG'),
    'empty network': (generate('--network', '{inputs}/empty.pkl', '--seeds', '0'), 'empty'),
    'malicious pickle': (generate('--network', '{inputs}/evil.pkl', '--seeds', '0'), 'not executed'),
    'cuda on cpu': (generate('--device', 'cuda', '--seeds', '0'), "'cuda' is not available"),
    'negative cutoff': (generate('--trunc-cutoff', '-1', '--seeds', '0'), '--trunc-cutoff'),
}
RUNS.update({name: argv for name, (argv, _) in BAD_INPUTS.items()})


def oracle_path() -> Path | None:
    """The oracle directory as the `oracle_dir` fixture finds it, or None (then the oracle runs are left out)."""
    return ORACLE_DIR if (ORACLE_DIR / 'README.md').is_file() else None


def prepare_inputs(inputs: Path) -> None:
    """The network files the command lines name: tiny 1- and 4-channel snapshots, and files that are no network."""
    tiny_snapshot_path(inputs, name='gray.pkl', img_channels=1)
    tiny_snapshot_path(inputs, name='rgba.pkl', img_channels=4)
    Image.new('RGB', (8, 8), 'red').save(inputs / 'image.png')
    (inputs / 'empty.pkl').write_bytes(b'')
    (inputs / 'evil.pkl').write_bytes(malicious_pickle(inputs / 'pwned'))


class _RunsCommand:
    """Unpickling this calls os.system(command), in any loader that trusts the pickle."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def malicious_pickle(marker: Path) -> bytes:
    """A pickle whose loading creates the file `marker` (through os.system)."""
    return pickle.dumps({'G_ema': _RunsCommand(f'touch {marker}')}, protocol=4)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('inputs')
    prepare_inputs(path)
    return path


@pytest.fixture(scope='module')
def runs(tmp_path_factory, inputs) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """name -> (finished process, its working directory) for every command line in RUNS, each in a fresh directory."""
    env = {**os.environ, 'STYLELENS_CACHE': str(tmp_path_factory.mktemp('cache'))}
    oracle = oracle_path()
    commands = {name: argv for name, argv in RUNS.items() if oracle is not None or not name.startswith('oracle')}

    def run(name: str) -> tuple[str, tuple[subprocess.CompletedProcess, Path]]:
        cwd = tmp_path_factory.mktemp('run')
        argv = [arg.format(oracle=oracle, inputs=inputs) for arg in commands[name]]
        return name, (subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=300), cwd)

    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) + 1) as pool:
        return dict(pool.map(run, commands))


def listed_commands(help_text: str) -> list[str]:
    """The verbs in the 'Commands:' section of a click help page."""
    section = help_text.split('Commands:', 1)[1]
    return re.findall(r'^  (\S+)  ', section, flags=re.MULTILINE)


def succeeded(runs: dict, name: str) -> tuple[subprocess.CompletedProcess, Path]:
    result, cwd = runs[name]
    assert result.returncode == 0, f'{name}: exit {result.returncode}\n{result.stderr}'
    assert 'Traceback' not in result.stderr
    return result, cwd


def assert_clean_failure(result: subprocess.CompletedProcess) -> str:
    """Non-zero exit, exactly one `Error:` line on stderr, no traceback; returns that line."""
    assert result.returncode != 0, result.stdout
    assert 'Traceback' not in result.stderr and 'Traceback' not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1, result.stderr
    return errors[0]


def read_png(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


# ------------------------------------------------------------------------------------------------ help

def test_help_lists_the_commands(runs):
    result, _ = succeeded(runs, 'help')
    assert {'info', 'generate', 'networks'} <= set(VERBS)
    assert listed_commands(result.stdout) == VERBS


def test_python_dash_m_runs_the_same_command(runs):
    result, _ = succeeded(runs, 'python -m')
    assert listed_commands(result.stdout) == VERBS


@pytest.mark.parametrize('verb', VERBS)
def test_command_help_shows_an_example(runs, verb):
    result, _ = succeeded(runs, f'{verb} --help')
    assert 'Example' in result.stdout


def test_networks_lists_registry_and_demo(runs):
    result, _ = succeeded(runs, 'networks')
    names = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert {'demo', 'ffhq'} <= names


# ------------------------------------------------------------------------------------------------ info

def test_info_on_the_embedded_demo(runs):
    result, _ = succeeded(runs, 'info')
    text = result.stdout.lower()
    assert 'trained' in text and 'shapes' in text
    assert 'random weights' not in text and 'not trained' not in text
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {'b4', 'b8', 'b16', 'b32'} <= rows and 'b64' not in rows


def test_info_json(runs):
    result, _ = succeeded(runs, 'info --json')
    summary = json.loads(result.stdout)
    assert summary['num_ws'] == 8 and summary['img_resolution'] == 32
    assert (summary['z_dim'], summary['w_dim']) == (256, 256)
    assert [b['name'] for b in summary['blocks']] == ['b4', 'b8', 'b16', 'b32']
    assert summary['blocks'][0]['ws_indices'] == [0, 1]
    assert summary['blocks'][-1]['ws_indices'][-1] == summary['num_ws'] - 1
    for block in summary['blocks']:
        indices = block['ws_indices']
        assert indices == list(range(indices[0], indices[0] + len(indices)))


# ------------------------------------------------------------------------------------------------ generate

@pytest.fixture(scope='module')
def demo_generator():
    return stylelens.load_generator('demo')


def test_generate_writes_pngs_and_manifest(runs, demo_generator):
    _, cwd = succeeded(runs, 'generate')
    out = cwd / 'out'
    names = [f'seed{s:04d}.png' for s in DEMO_SEEDS]
    assert sorted(p.name for p in out.glob('*.png')) == names
    G = demo_generator
    z = torch.from_numpy(seeds_to_z(DEMO_SEEDS, G.z_dim))
    with torch.no_grad():
        expected = to_uint8(G(z, None, noise_mode='const'))
    for name, image in zip(names, expected):
        png = read_png(out / name)
        assert png.mode == 'RGB' and png.size == (32, 32)
        assert np.abs(np.asarray(png).astype(int) - image.astype(int)).max() <= 1, name

    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['options']['seeds'] == DEMO_SEEDS
    assert manifest['options']['truncation_psi'] == 1.0
    assert manifest['options']['noise_mode'] == 'const'
    network_file = Path(manifest['network']['path'])
    assert manifest['network']['sha256'] == hashlib.sha256(network_file.read_bytes()).hexdigest()
    assert manifest['argv'][1:] == RUNS['generate'][1:]
    for package in ('python', 'torch', 'numpy'):
        assert manifest['environment'][package]
    assert manifest['tool']['version'] == stylelens.__version__


def test_generate_save_ws(runs, demo_generator):
    _, cwd = succeeded(runs, 'generate')
    G = demo_generator
    with np.load(cwd / 'out' / 'ws.npz') as saved:
        ws = saved['w']
    assert ws.shape == (len(DEMO_SEEDS), G.num_ws, G.w_dim) and ws.dtype == np.float32
    with torch.no_grad():
        expected = G.mapping(torch.from_numpy(seeds_to_z(DEMO_SEEDS, G.z_dim)), None)
    np.testing.assert_array_equal(ws, expected.numpy())


@pytest.mark.parametrize('name,mode', [('gray', 'L'), ('rgba', 'RGBA')])
def test_generate_grayscale_and_rgba(runs, name, mode):
    _, cwd = succeeded(runs, name)
    png = read_png(cwd / 'out' / 'seed0003.png')
    assert png.mode == mode and png.size == (16, 16)


def test_generate_matches_official_pngs(runs, oracle_dir):
    _, cwd = succeeded(runs, 'oracle uncond')
    with np.load(oracle_dir / 'sg2_uncond64.ref.npz') as ref:
        expected = ref['img_uint8_psi07']
    for seed in range(4):
        actual = np.asarray(read_png(cwd / 'out' / f'seed{seed:04d}.png'))
        assert actual.shape == expected[seed].shape
        assert np.abs(actual.astype(int) - expected[seed].astype(int)).max() <= 1, seed


def test_conditional_network_without_class_fails_with_one_line(runs, oracle_dir):
    result, cwd = runs['oracle cond, no class']
    line = assert_clean_failure(result)
    assert result.stderr.strip() == line, 'expected nothing on stderr but the error line'
    assert 'c_dim=10' in line and '0..9' in line
    assert not (cwd / 'out').exists()


def test_conditional_network_with_class(runs, oracle_dir):
    _, cwd = succeeded(runs, 'oracle cond, class 2')
    with np.load(oracle_dir / 'sg2_cond32.ref.npz') as ref:
        expected = ref['img_uint8_psi07'][2]  # seed 2, class 2, psi 0.7
    actual = np.asarray(read_png(cwd / 'out' / 'seed0002.png'))
    assert actual.shape == (32, 32, 3)
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1


# ------------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize('name', list(BAD_INPUTS))
def test_bad_input_gives_one_error_line(runs, name):
    if name == 'cuda on cpu' and torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    result, cwd = runs[name]
    line = assert_clean_failure(result)
    assert BAD_INPUTS[name][1] in line
    assert not (cwd / 'out').exists() or not any((cwd / 'out').iterdir())


def test_malicious_pickle_is_not_executed(runs, inputs, tmp_path):
    assert_clean_failure(runs['malicious pickle'][0])
    assert not (inputs / 'pwned').exists()
    # Control: a plain unpickler does run it, so the absence above means something.
    pickle.loads(malicious_pickle(tmp_path / 'control'))
    assert (tmp_path / 'control').exists()
