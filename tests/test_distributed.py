"""Verbs under `torchrun --standalone --nproc_per_node=2` (gloo, CPU) write the bytes a single process writes: generate,
activations (per seed and as a chunked dump that resumes after a kill), metrics' feature statistics, mix-study,
directions pca|sefa|supervised and styles (dump and rank); a failure on one rank stops both with that rank's one
line; `stylelens.dumps.iter_dump` reads a dump chunk by chunk."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_metrics import random_inception_state

import stylelens
from conftest import cifar_subset, tiny_snapshot_path
from stylelens import distributed
from stylelens.cli import cli
from stylelens.cli.ranks import check_sharded
from stylelens.directions.pca import w_pca
from stylelens.dumps import iter_dump
from stylelens.errors import StylelensError

VOLATILE = ('created_utc', 'argv')  # the only manifest entries that differ between two runs of one command


def torchrun_command(*args: str) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc_per_node=2 -m stylelens -- ARGS` (the `--` keeps
    torchrun's own parser off `--num`, which it would take for its `--numa-binding`)."""
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'stylelens',
            '--', *args]


def one_thread_env(**extra: str) -> dict[str, str]:
    """This process's environment (with the test's private cache), one thread per process, and `extra`."""
    return {**os.environ, 'OMP_NUM_THREADS': '1', **extra}


def torchrun(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run a verb on two ranks, one thread each, output captured."""
    return subprocess.run(torchrun_command(*args), capture_output=True, text=True, timeout=timeout,
                          env=one_thread_env(**env))


def one_process(*args: str) -> None:
    """The same command in this process (the single-process reference)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


def assert_same_outputs(one: Path, two: Path) -> None:
    """Same files with the same bytes; manifests (manifest.json, X.manifest.json) equal but for their creation time,
    command line and the output folder in the paths they record."""
    files = sorted(p.relative_to(one) for p in one.rglob('*') if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob('*') if p.is_file())
    for name in files:
        if name.name.endswith('manifest.json'):
            first, second = (json.loads((root / name).read_text().replace(str(root), 'OUT')) for root in (one, two))
            assert {k: v for k, v in first.items() if k not in VOLATILE} == \
                   {k: v for k, v in second.items() if k not in VOLATILE}
        else:
            assert (one / name).read_bytes() == (two / name).read_bytes(), name


@pytest.fixture(autouse=True)
def _quiet(one_thread: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread (as the torchrun ranks get) and a private cache."""
    monkeypatch.setenv('STYLELENS_CACHE', str(tmp_path / 'cache'))


def test_helpers_are_the_identity_in_one_process() -> None:
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard('abcde') == list('abcde') and distributed.gather_shards([1, 2]) == [1, 2]
    assert distributed.gather_to_main([1, 2]) == [1, 2]
    assert distributed.all_sum([1.5, 2]).tolist() == [1.5, 2.0] and distributed.from_main(lambda: 7) == 7
    assert distributed.ordered_sum(5, lambda i: [i, 1], per_round=2).tolist() == [10.0, 5.0]
    with pytest.raises(StylelensError, match='nothing to sum'):
        distributed.ordered_sum(0, lambda i: i)


def test_groups_split_per_subcommand_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('WORLD_SIZE', '2')  # what torchrun sets: check_sharded refuses as under it
    for verb in ('directions', 'directions pca', 'directions sefa', 'directions supervised', 'styles', 'styles rank'):
        check_sharded(verb)
    for verb in ('directions benchmark', 'mix', 'traverse'):
        with pytest.raises(StylelensError, match=f'^{verb} does not split its work'):
            check_sharded(verb)


def test_generate_on_two_ranks_writes_the_bytes_of_one_process(tmp_path: Path) -> None:
    args = ['generate', '--seeds', '0-10', '--batch', '3', '--save-ws']
    one_process(*args, '--outdir', str(tmp_path / 'one'))
    result = torchrun(*args, '--outdir', str(tmp_path / 'two'))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('wrote 11 images') == 1  # rank 0 speaks for both
    assert_same_outputs(tmp_path / 'one', tmp_path / 'two')
    assert '11/11' in result.stderr  # rank 0's bar counts both ranks' images


def test_a_failure_on_one_rank_stops_both_with_its_one_line(tmp_path: Path) -> None:
    out = tmp_path / 'out'
    (out / 'seed0003.png').mkdir(parents=True)  # batch 3 is rank 1's: only it fails to write its image
    result = torchrun('generate', '--seeds', '0-9', '--batch', '1', '--outdir', str(out), timeout=60)
    assert result.returncode != 0
    ours = [line[line.index('Error: rank'):] for line in result.stderr.splitlines() if 'Error: rank' in line]
    assert len(ours) == 1 and ours[0].startswith('Error: rank 1: IsADirectoryError') and 'seed0003.png' in ours[0]
    assert not (out / 'manifest.json').exists() and not list(out.glob('.*tmp*'))


def test_activations_per_seed_on_two_ranks(tmp_path: Path) -> None:
    args = ['activations', '--seeds', '0-2', '--blocks', 'b8,b32', '--layers', 'b16.conv1']
    one_process(*args, '--outdir', str(tmp_path / 'one'))
    result = torchrun(*args, '--outdir', str(tmp_path / 'two'))
    assert result.returncode == 0, result.stderr
    assert_same_outputs(tmp_path / 'one', tmp_path / 'two')


def test_a_killed_dump_resumes_without_redoing_chunks_and_matches_one_process(tmp_path: Path) -> None:
    args = ['activations', '--seeds', '0-399', '--chunk', '8', '--blocks', 'b8', '--layers', 'b16.conv1']
    dump = tmp_path / 'two'
    run = subprocess.Popen(torchrun_command(*args, '--outdir', str(dump)), env=one_thread_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list(dump.glob('chunk-*'))) < 4 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)  # torchrun stops both ranks mid-dump
    run.wait(timeout=60)
    done = {p.name: (p / 'b8.x.npy').stat() for p in dump.glob('chunk-*')}
    assert 4 <= len(done) < 50 and not (dump / 'manifest.json').exists()
    with pytest.raises(StylelensError, match='unfinished'):
        next(iter_dump(dump))

    result = torchrun(*args, '--outdir', str(dump))
    assert result.returncode == 0, result.stderr
    assert f'{len(done)} of 50 chunks already there' in result.stderr
    for name, before in done.items():  # finished chunks were not written again
        after = (dump / name / 'b8.x.npy').stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    one_process(*args, '--outdir', str(tmp_path / 'one'))
    assert_same_outputs(tmp_path / 'one', dump)
    assert not list(dump.glob('.*partial'))

    changed = torchrun(*args[:-1], 'b32.conv1', '--outdir', str(dump), timeout=60)
    assert changed.returncode != 0 and 'made with other settings (hooks, options differ)' in changed.stderr


def test_iter_dump_streams_the_arrays_of_the_per_seed_files(tmp_path: Path) -> None:
    one_process('activations', '--seeds', '3-7', '--chunk', '2', '--blocks', 'b8', '--outdir', str(tmp_path / 'd'))
    one_process('activations', '--seeds', '3-7', '--blocks', 'b8', '--no-pngs', '--outdir', str(tmp_path / 's'))
    chunks = list(iter_dump(tmp_path / 'd', ['b8.x']))
    assert [c.seeds.tolist() for c in chunks] == [[3, 4], [5, 6], [7]]
    assert isinstance(chunks[0]['b8.x'], np.memmap) and list(chunks[0].arrays) == ['b8.x']
    for chunk in chunks:
        for row, seed in enumerate(chunk.seeds):
            with np.load(tmp_path / 's' / f'seed{seed:04d}' / 'b8.npz') as per_seed:
                assert np.array_equal(chunk['b8.x'][row], per_seed['x'][0])
    with pytest.raises(StylelensError, match=r'no array b9.x .*arrays: b8.img, b8.x'):
        next(iter_dump(tmp_path / 'd', ['b9.x']))
    with pytest.raises(StylelensError, match='not a stylelens dump'):
        next(iter_dump(tmp_path / 's'))


def test_metric_features_on_two_ranks_give_the_scores_of_one_process(tmp_path: Path) -> None:
    weights = tmp_path / 'inception.pth'
    torch.save(random_inception_state(), weights)
    network = tiny_snapshot_path(tmp_path)
    args = ['metrics', '--metric', 'fid,kid,is', '--real', f'cifar10:{cifar_subset()}', '--num-real', '6', '--fake',
            str(network), '--num', '7', '--batch', '2', '--is-splits', '2', '--kid-subsets', '3', '--inception',
            str(weights), '--device', 'cpu']
    one_process(*args, '--out', str(tmp_path / 'one.json'))
    result = torchrun(*args, '--out', str(tmp_path / 'two.json'), timeout=180, STYLELENS_CACHE=str(tmp_path / 'two'))
    assert result.returncode == 0, result.stderr
    one, two = (json.loads((tmp_path / f'{n}.json').read_text())['extra'] for n in ('one', 'two'))
    assert two['fid'] == pytest.approx(one['fid'], rel=1e-6)  # mean and covariance summed over ranks in float64
    assert {k: v for k, v in two.items() if k != 'fid'} == {k: v for k, v in one.items() if k != 'fid'}
    assert two['num_fake'] == 7 and two['real'] == dict(one['real'], cache='miss')
    (cached_one,), (cached_two,) = ((tmp_path / d / 'metrics').glob('*.npz') for d in ('cache', 'two'))
    with np.load(cached_one) as first, np.load(cached_two) as second:  # rank 0 wrote the real features' cache
        assert first['features'].tobytes() == second['features'].tobytes()


@pytest.mark.slow
def test_mix_study_on_two_ranks_and_verbs_that_do_not_shard(tmp_path: Path) -> None:
    args = ['mix-study', '--rows', '1,2,3', '--cols', '4,5', '--block-sets', 'b4;b8;b4,b8;b16,b32', '--batch', '4']
    one_process(*args, '--outdir', str(tmp_path / 'one'))
    result = torchrun(*args, '--outdir', str(tmp_path / 'two'))
    assert result.returncode == 0, result.stderr
    assert_same_outputs(tmp_path / 'one', tmp_path / 'two')
    for verb in (['mix', '--rows', '1', '--cols', '2'], ['directions', 'benchmark']):
        refused = torchrun(*verb, '--outdir', str(tmp_path / 'refused'), timeout=60)
        ours = [line for line in refused.stderr.splitlines() if 'Error: rank' in line]
        assert refused.returncode != 0 and len(ours) == 1, refused.stderr
        assert f"{' '.join(verb[:2 if verb[0] == 'directions' else 1])} does not split its work" in ours[0]
    assert not (tmp_path / 'refused').exists()


@pytest.mark.slow
def test_w_pca_second_moments_summed_over_two_ranks_in_one_process_order(tmp_path: Path) -> None:
    script = tmp_path / 'pca.py'
    script.write_text('import sys\nimport numpy as np\nimport stylelens\nfrom stylelens import distributed\n'
                      'from stylelens.directions.pca import w_pca\n\ndistributed.start()\n'
                      "pca = w_pca(stylelens.load_generator('demo'), 9000, seed=1, use_cache=False)\n"
                      'if distributed.is_main():\n'
                      '    np.savez(sys.argv[1], components=pca.components, variance=pca.explained_variance)\n'
                      'distributed.stop()\n')
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(script),
               str(tmp_path / 'two.npz')]  # 3 mapping chunks: rank 0 maps two, rank 1 one
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=one_thread_env())
    assert result.returncode == 0, result.stderr
    one, two = w_pca(stylelens.load_generator('demo'), 9000, seed=1, use_cache=False), np.load(tmp_path / 'two.npz')
    assert two['variance'].tobytes() == one.explained_variance.tobytes()  # chunk sums added in chunk order
    assert two['components'].tobytes() == one.components.tobytes()


def two_ranks_and_one(tmp_path: Path, runs: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Each command (its `{}` the output folder) in one process into one/ and on two ranks into two/ (each with a
    cache of its own, so both compute); the two folders must hold the same bytes. Returns the torchrun results."""
    results = []
    for args in runs:
        one_process(*(arg.format(tmp_path / 'one') for arg in args))
        result = torchrun(*(arg.format(tmp_path / 'two') for arg in args), STYLELENS_CACHE=str(tmp_path / 'cache2'))
        assert result.returncode == 0, result.stderr
        results.append(result)
    assert_same_outputs(tmp_path / 'one', tmp_path / 'two')
    return results


def test_directions_pca_on_two_ranks_writes_the_bytes_of_one_process(tmp_path: Path) -> None:
    # 9000 samples are 3 mapping chunks and the figure has 3 rows: rank 0 takes two of each, rank 1 one
    result, = two_ranks_and_one(tmp_path, [['directions', 'pca', '--samples', '9000', '--pca-samples', '9000',
                                            '--num', '4', '--figure-rows', '3', '--out', '{}/pca.npz']])
    assert result.stdout.count('4 pca directions') == 1  # rank 0 speaks for both
    assert_same_outputs(tmp_path / 'cache' / 'pca', tmp_path / 'cache2' / 'pca')  # rank 0 wrote the PCA cache


def test_directions_sefa_on_two_ranks_writes_the_bytes_of_one_process(tmp_path: Path) -> None:
    result, = two_ranks_and_one(tmp_path, [['directions', 'sefa', '--num', '5', '--pca-samples', '300',
                                            '--figure-rows', '3', '--out', '{}/sefa.npz']])
    assert result.stdout.count('5 sefa directions') == 1


@pytest.mark.parametrize('fit', [['--seeds', '0-39', '--targets', 'size,x', '--condition', 'hue_cos'],
                                 ['--seeds', '0-29', '--space', 'w+', '--targets', 'x']], ids=['w', 'w+'])
def test_directions_supervised_on_two_ranks_writes_the_bytes_of_one_process(tmp_path: Path, fit: list[str]) -> None:
    # batches of 8 seeds, mapped and scored: rank 0 takes batches 0, 2, 4, rank 1 batches 1, 3
    result, = two_ranks_and_one(tmp_path, [['directions', 'supervised', '--classifier', 'factors', *fit, '--batch',
                                            '8', '--pca-samples', '300', '--figure-rows', '3', '--out',
                                            '{}/sup.npz']])
    seeds = int(fit[1].split('-')[1]) + 1
    assert f'{seeds}/{seeds}' in result.stderr  # rank 0's bar counts both ranks' images


def test_styles_on_two_ranks_writes_the_bytes_of_one_process(tmp_path: Path) -> None:
    result, = two_ranks_and_one(tmp_path, [['styles', '--seeds', '0-10', '--batch', '3', '--out', '{}/styles.npz']])
    assert '11/11' in result.stderr and result.stdout.count('11 seeds x') == 1  # 4 chunks: 2 per rank


def test_styles_rank_on_two_ranks_writes_the_bytes_of_one_process(tmp_path: Path) -> None:
    scores = np.random.RandomState(0).randn(12)
    rows = ''.join(f'{seed},{value!r}\n' for seed, value in enumerate(scores.tolist()))
    (tmp_path / 'scores.csv').write_text('seed,score\n' + rows)
    common = ['--sigma-seeds', '10', '--top', '3', '--batch', '4']  # sigmas from 3 chunks of 4, 4, 2 seeds
    two_ranks_and_one(tmp_path, [
        ['styles', 'rank', '--region', '0,0,16,16', '--seeds', '0-2', '--probes', '4', *common, '--out',
         '{}/region.csv'],  # 6 (side, seed) probe items and 3 locality maps dealt over the ranks
        ['styles', 'rank', '--scores', str(tmp_path / 'scores.csv'), *common, '--out', '{}/scores.csv']])
