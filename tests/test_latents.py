"""Latent conventions: seed lists, seed → z (checked against the official oracle), class labels, W files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ORACLE_DIR
from stylelens.errors import StylelensError
from stylelens.latents import (
    MAX_SEED,
    class_to_c,
    load_ws_file,
    parse_int_list,
    resolve_class,
    save_ws_file,
    seed_to_z,
    seeds_to_z,
)

CIFAR = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
W_DIM, NUM_WS = 8, 5


def oracle(name: str) -> np.lib.npyio.NpzFile:
    """Open an oracle reference npz, or skip when the shared oracle directory is not there."""
    path = ORACLE_DIR / f'{name}.ref.npz'
    if not path.is_file():
        pytest.skip(f'oracle fixture {path} not found (set STYLELENS_ORACLE_DIR to the shared oracle directory)')
    return np.load(path)


def error_message(excinfo: pytest.ExceptionInfo) -> str:
    """The message of a raised StylelensError, checked to be one line."""
    message = str(excinfo.value)
    assert message and '\n' not in message
    return message


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('0', [0]),
        ('0-7', list(range(8))),
        ('0-7,12', [*range(8), 12]),
        (' 3 - 5 , 1 ', [3, 4, 5, 1]),
        ('5,1,5', [5, 1, 5]),
        ('4-4', [4]),
        ('2,0-1', [2, 0, 1]),
    ],
)
def test_parse_int_list_accepts_official_idiom(text: str, expected: list[int]) -> None:
    assert parse_int_list(text) == expected


@pytest.mark.parametrize(
    ('text', 'bad_part'),
    [('a-3', 'a-3'), ('5-2', '5-2'), ('', ''), ('   ', '   '), ('-3', '-3'), ('1,5-x', '5-x'), ('1,,2', '1,,2'),
     ('1.5', '1.5'), ('0-2000000', '0-2000000')],
)
def test_parse_int_list_rejects_bad_input(text: str, bad_part: str) -> None:
    with pytest.raises(StylelensError) as excinfo:
        parse_int_list(text)
    message = error_message(excinfo)
    assert f"bad --seeds '{bad_part}'" in message
    assert '0-7,12' in message


def test_parse_int_list_names_the_option() -> None:
    with pytest.raises(StylelensError, match=r"^bad --styles 'x'"):
        parse_int_list('x', what='styles')


def test_seed_to_z_is_the_generate_py_convention() -> None:
    z = seed_to_z(42, 16)
    assert z.shape == (1, 16) and z.dtype == np.float64
    np.testing.assert_array_equal(z, np.random.RandomState(42).randn(1, 16))


def test_seeds_to_z_does_not_depend_on_batching() -> None:
    seeds = [7, 0, 7, MAX_SEED, np.int64(3)]
    batch = seeds_to_z(seeds, 32)
    assert batch.shape == (5, 32) and batch.dtype == np.float64
    for row, seed in zip(batch, seeds):
        np.testing.assert_array_equal(row, seed_to_z(seed, 32)[0])
    np.testing.assert_array_equal(seeds_to_z(seeds[2:], 32), batch[2:])
    assert seeds_to_z([], 32).shape == (0, 32)


@pytest.mark.parametrize('seed', [-1, MAX_SEED + 1, 1.5, '3', None])
def test_seed_to_z_rejects_out_of_range_seeds(seed: object) -> None:
    with pytest.raises(StylelensError) as excinfo:
        seed_to_z(seed, 4)
    assert f'0..{MAX_SEED}' in error_message(excinfo)


def test_z_matches_oracle() -> None:
    ref = oracle('sg2_uncond64')
    np.testing.assert_array_equal(ref['z'], seeds_to_z([0, 1, 2, 3], 128).astype(np.float32))


def test_c_matches_oracle() -> None:
    np.testing.assert_array_equal(oracle('sg2_uncond64')['c'], class_to_c(None, 0, 4))
    labels = np.concatenate([class_to_c(i, 10, 1) for i in range(4)])
    np.testing.assert_array_equal(oracle('sg2_cond32')['c'], labels)


def test_class_to_c_shapes() -> None:
    empty = class_to_c(None, 0, 3)
    assert empty.shape == (3, 0) and empty.dtype == np.float32
    c = class_to_c(2, 4, 3)
    assert c.dtype == np.float32
    np.testing.assert_array_equal(c, np.tile([0, 0, 1, 0], (3, 1)))
    np.testing.assert_array_equal(class_to_c('dog', 10, 2, CIFAR), class_to_c(5, 10, 2))


def test_conditional_network_needs_a_class() -> None:
    with pytest.raises(StylelensError) as excinfo:
        class_to_c(None, 10, 1)
    assert error_message(excinfo) == 'this network is conditional (c_dim=10): pass --class with one of 0..9'
    with pytest.raises(StylelensError) as excinfo:
        class_to_c(None, 10, 1, CIFAR)
    assert '0=airplane, 1=automobile' in error_message(excinfo) and '9=truck' in str(excinfo.value)


def test_long_class_name_lists_are_shortened() -> None:
    names = [f'class{i}' for i in range(1000)]
    with pytest.raises(StylelensError) as excinfo:
        class_to_c(None, 1000, 1, names)
    message = error_message(excinfo)
    assert '0..999' in message and '999=class999' in message and '500=class500' not in message


@pytest.mark.parametrize('index', [10, -1])
def test_class_out_of_range(index: int) -> None:
    with pytest.raises(StylelensError) as excinfo:
        class_to_c(index, 10, 1)
    message = error_message(excinfo)
    assert f'--class {index}' in message and '0..9' in message


@pytest.mark.parametrize('value', [0, 'dog'])
def test_unconditional_network_rejects_a_class(value: object) -> None:
    with pytest.raises(StylelensError) as excinfo:
        class_to_c(value, 0, 1)
    assert 'unconditional' in error_message(excinfo)


def test_resolve_class_accepts_indices_and_names() -> None:
    assert resolve_class('3', 10) == 3
    assert resolve_class(' Truck ', 10, CIFAR) == 9
    assert resolve_class('7', 10, CIFAR) == 7


def test_resolve_class_suggests_close_names() -> None:
    with pytest.raises(StylelensError) as excinfo:
        resolve_class('dgo', 10, CIFAR)
    message = error_message(excinfo)
    assert "did you mean 'dog'?" in message and '0=airplane' in message
    with pytest.raises(StylelensError, match='did you mean') as excinfo:
        resolve_class('automobil', 10, CIFAR)
    with pytest.raises(StylelensError) as excinfo:
        resolve_class('zebra', 10, CIFAR)
    assert 'did you mean' not in error_message(excinfo)


def test_resolve_class_without_names_wants_an_index() -> None:
    with pytest.raises(StylelensError) as excinfo:
        resolve_class('dog', 10)
    assert 'no class names' in error_message(excinfo) and '0..9' in str(excinfo.value)
    with pytest.raises(StylelensError, match='out of range'):
        resolve_class('10', 10)


def random_ws(n: int) -> np.ndarray:
    """Some [n, NUM_WS, W_DIM] float32 latents."""
    return np.random.default_rng(n).standard_normal((n, NUM_WS, W_DIM)).astype(np.float32)


def test_load_ws_file_accepts_every_shape(tmp_path: Path) -> None:
    ws = random_ws(2)
    np.save(tmp_path / 'full.npy', ws)
    np.save(tmp_path / 'per_sample.npy', ws[:, 0])
    np.save(tmp_path / 'single.npy', ws[0, 0].astype(np.float64))
    np.testing.assert_array_equal(load_ws_file(tmp_path / 'full.npy', w_dim=W_DIM, num_ws=NUM_WS), ws)
    broadcast = load_ws_file(tmp_path / 'per_sample.npy', w_dim=W_DIM, num_ws=NUM_WS)
    np.testing.assert_array_equal(broadcast, np.repeat(ws[:, :1], NUM_WS, axis=1))
    single = load_ws_file(tmp_path / 'single.npy', w_dim=W_DIM, num_ws=NUM_WS)
    assert single.shape == (1, NUM_WS, W_DIM) and single.dtype == np.float32
    np.testing.assert_array_equal(single[0, 3], ws[0, 0])


@pytest.mark.parametrize(
    'arrays', [{'w': 'W'}, {'ws': 'W'}, {'latents': 'W'}, {'w': 'W', 'ws': 'other', 'seeds': 'other'}]
)
def test_load_ws_file_picks_the_npz_key(tmp_path: Path, arrays: dict[str, str]) -> None:
    ws, other = random_ws(3), random_ws(4)
    np.savez(tmp_path / 'ws.npz', **{key: ws if role == 'W' else other for key, role in arrays.items()})
    np.testing.assert_array_equal(load_ws_file(tmp_path / 'ws.npz', w_dim=W_DIM, num_ws=NUM_WS), ws)


@pytest.mark.parametrize(
    ('array', 'needle'),
    [
        (np.zeros((2, NUM_WS, W_DIM + 1), np.float32), f'shape [2, {NUM_WS}, {W_DIM + 1}]'),
        (np.zeros((2, NUM_WS + 1, W_DIM), np.float32), f'shape [2, {NUM_WS + 1}, {W_DIM}]'),
        (np.zeros((W_DIM + 1,), np.float32), f'shape [{W_DIM + 1}]'),
        (np.zeros((1, 1, NUM_WS, W_DIM), np.float32), f'shape [1, 1, {NUM_WS}, {W_DIM}]'),
        (np.zeros((0, W_DIM), np.float32), f'shape [0, {W_DIM}]'),
        (np.zeros((1, NUM_WS, W_DIM), np.int64), 'dtype int64'),
        (np.full((1, W_DIM), np.nan, np.float32), 'NaN'),
    ],
)
def test_load_ws_file_rejects_bad_arrays(tmp_path: Path, array: np.ndarray, needle: str) -> None:
    np.save(tmp_path / 'bad.npy', array)
    with pytest.raises(StylelensError) as excinfo:
        load_ws_file(tmp_path / 'bad.npy', w_dim=W_DIM, num_ws=NUM_WS)
    message = error_message(excinfo)
    assert needle in message
    if 'shape' in needle:
        assert f'[{W_DIM}], [N, {W_DIM}] or [N, {NUM_WS}, {W_DIM}]' in message


def test_load_ws_file_lists_keys_when_ambiguous(tmp_path: Path) -> None:
    np.savez(tmp_path / 'two.npz', a=random_ws(1), b=random_ws(1))
    with pytest.raises(StylelensError) as excinfo:
        load_ws_file(tmp_path / 'two.npz', w_dim=W_DIM, num_ws=NUM_WS)
    message = error_message(excinfo)
    assert 'a, b' in message and "'w'" in message


def test_load_ws_file_rejects_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / 'notes.npy').write_text('not an array\nsecond line\n')
    np.savez(tmp_path / 'empty.npz')
    np.savez(tmp_path / 'pickled.npz', w=np.array([{'a': 1}], dtype=object))
    cases = {
        'missing.npy': 'not found', 'notes.npy': 'cannot read', 'empty.npz': 'no arrays', 'pickled.npz': 'cannot read',
    }
    for name, needle in cases.items():
        with pytest.raises(StylelensError) as excinfo:
            load_ws_file(tmp_path / name, w_dim=W_DIM, num_ws=NUM_WS)
        assert needle in error_message(excinfo)


def test_save_ws_file_round_trip(tmp_path: Path) -> None:
    ws = random_ws(2)
    path = save_ws_file(tmp_path / 'projected_w.npz', torch.from_numpy(ws), seeds=[3, 4], psi=0.7,
                        network=tmp_path / 'net.pkl', options={'b': 1, 'a': (1, 2)})
    assert path == tmp_path / 'projected_w.npz'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['projected_w.npz']
    with np.load(path, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved['w'], ws)
        assert saved['seeds'].tolist() == [3, 4] and float(saved['psi']) == 0.7
        assert str(saved['network']) == str(tmp_path / 'net.pkl')
        assert str(saved['options']) == '{"a": [1, 2], "b": 1}'
    np.testing.assert_array_equal(load_ws_file(path, w_dim=W_DIM, num_ws=NUM_WS), ws)


def test_save_ws_file_keeps_the_exact_name(tmp_path: Path) -> None:
    path = save_ws_file(tmp_path / 'latents.w', random_ws(1))
    assert [p.name for p in tmp_path.iterdir()] == ['latents.w']
    np.testing.assert_array_equal(load_ws_file(path, w_dim=W_DIM, num_ws=NUM_WS), random_ws(1))
