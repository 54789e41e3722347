"""Directions in W: the one file format, PCA (moved, cache in the new format), SeFa (against the closed-form maths on
StyleGAN2 and StyleGAN3), supervised boundaries (recovering a planted direction, conditioning, held-out accuracy),
scores CSVs, scorers read weights-only, and `traverse --direction DIRS.npz:K`. In-process, on the demo network."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import stylelens
from stylelens.directions.format import load_directions, make_set, save_directions
from stylelens.directions.pca import pca_set, w_pca
from stylelens.directions.scores import SeedScores, read_scores_csv
from stylelens.directions.sefa import sefa
from stylelens.directions.spec import direction_from_spec
from stylelens.directions.supervised import fit_boundary, orthogonalize, scored_latents, supervised_directions
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws
from stylelens.mixing import parse_layers
from stylelens.scorers import load_scorer
from stylelens.stylespace import select_layers, style_layers
from stylelens.traversal import traversal_ws

PCA_SAMPLES = 512
pytestmark = pytest.mark.usefixtures('private_cache')


@pytest.fixture(scope='module')
def G():
    return stylelens.load_generator('demo')


def small_set(G, count=3, layers=None):
    vectors = np.random.RandomState(0).randn(count, G.w_dim)
    mask = np.zeros((count, G.num_ws), bool)
    mask[:, layers if layers is not None else slice(None)] = True
    return make_set(vectors, mask, method='test', options=dict(a=1), scores=np.arange(count, dtype=float),
                    score_name='index', labels=[f't{k}' for k in range(count)], network_sha256='ab' * 32)


# ------------------------------------------------------------------------------------------------ format

def test_direction_file_round_trip(G, tmp_path):
    dirs = small_set(G, layers=[0, 1])
    dirs.extras['note'] = np.arange(4)
    path = save_directions(tmp_path / 'd.npz', dirs)
    back = load_directions(path)
    np.testing.assert_array_equal(back.directions, dirs.directions)
    np.testing.assert_allclose(np.linalg.norm(back.directions, axis=1), 1)
    assert back.layer_indices(0) == [0, 1] and back.labels == ['t0', 't1', 't2'] and back.options == {'a': 1}
    assert back.method == 'test' and back.network_sha256 == 'ab' * 32
    np.testing.assert_array_equal(back.extras['note'], np.arange(4))
    assert small_set(G).layer_indices(0) is None  # all layers


@pytest.mark.parametrize('damage, message', [
    (lambda a: a.pop('labels'), 'not a stylelens direction file'),
    (lambda a: a.update(directions=a['directions'] * 2), 'unit vectors'),
    (lambda a: a.update(layers=a['layers'].astype(int)), 'bool mask'),
    (lambda a: a.update(scores=a['scores'][:1]), 'one entry per direction'),
    (lambda a: a.update(options=np.asarray('[1, 2]')), 'not a JSON object'),
    (lambda a: a.update(version=np.asarray(99)), 'upgrade stylelens'),
])
def test_damaged_direction_files_are_refused_in_one_line(G, tmp_path, damage, message):
    save_directions(tmp_path / 'd.npz', small_set(G))
    with np.load(tmp_path / 'd.npz') as data:
        arrays = dict(data)
    damage(arrays)
    np.savez(tmp_path / 'bad.npz', **arrays)
    with pytest.raises(StylelensError, match=message) as err:
        load_directions(tmp_path / 'bad.npz')
    assert '\n' not in str(err.value)


@pytest.mark.parametrize('name, content, message', [
    ('d.npy', lambda path: np.save(path, np.ones(3)), 'a .npy array, not an npz archive'),
    ('d.npz', lambda path: path.write_bytes(b'not a zip'), 'cannot read direction file'),
    ('d.npz', lambda path: np.savez(path, direction=np.ones(3)), 'not a stylelens direction file'),
])
def test_other_files_are_not_direction_files(tmp_path, name, content, message):
    content(tmp_path / name)
    with pytest.raises(StylelensError, match=message):
        load_directions(tmp_path / name)


def test_direction_file_for_another_network_is_refused(G, tmp_path):
    dirs = small_set(G)
    with pytest.raises(StylelensError, match='w_dim 256 and 8 ws; this one has w_dim 512'):
        dirs.check_network(512, 8)


# ------------------------------------------------------------------------------------------------ PCA

def test_pca_cache_is_a_direction_file(G, tmp_path):
    first = w_pca(G, PCA_SAMPLES, seed=3)
    cached = sorted((tmp_path / 'cache' / 'pca').glob('*-n512-seed3.npz'))
    assert len(cached) == 1
    dirs = load_directions(cached[0])
    assert dirs.method == 'pca' and dirs.score_name == 'explained variance ratio'
    np.testing.assert_array_equal(dirs.directions, first.components)
    np.testing.assert_array_equal(dirs.extras['mean'], first.mean)


def test_pca_set_moves_the_chosen_layers(G):
    dirs = pca_set(w_pca(G, PCA_SAMPLES), G.num_ws, {}, num=4, layers=parse_layers(G, 'b4'))
    assert len(dirs) == 4 and dirs.layer_indices(0) == [0]
    assert np.all(np.diff(dirs.scores) <= 0)


# ------------------------------------------------------------------------------------------------ SeFa

def affine_weights(G, names):
    return torch.cat([G.get_submodule(f'{n}.affine').weight.detach().double() for n in names]).numpy()


def test_sefa_is_the_svd_of_the_convolution_affines(G):
    dirs = sefa(G)
    conv = [layer.name for layer in style_layers(G) if layer.kind == 'conv']
    assert dirs.options['affine_layers'] == [n.removeprefix('synthesis.') for n in conv]
    gain = G.synthesis.b4.conv1.affine.weight_gain
    _, singular, vh = np.linalg.svd(affine_weights(G, conv) * gain, full_matrices=False)
    np.testing.assert_allclose(dirs.scores, singular, rtol=1e-6)
    for k in range(8):  # unit and equal to the SVD's right singular vectors up to sign
        assert abs(abs(dirs.directions[k] @ vh[k]) - 1) < 1e-6
    assert dirs.layers.all() and len(dirs) == G.w_dim


def test_sefa_normalize_is_the_authors_column_normalisation(G):
    names = [layer.name for layer in select_layers(G, 'b4,b8')]
    weight = affine_weights(G, names).T                       # [w_dim, channels], as the SeFa code builds it
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eigh(weight @ weight.T)
    dirs = sefa(G, 'b4,b8', normalize=True, num=3)
    np.testing.assert_allclose(dirs.scores ** 2, values[::-1][:3], rtol=1e-6)
    for k in range(3):
        assert abs(abs(dirs.directions[k] @ vectors[:, -1 - k]) - 1) < 1e-6
    assert dirs.layer_indices(0) == [0, 1, 2]  # the ws b4 and b8 own


def test_sefa_layers_choose_affines_and_ws(G):
    dirs = sefa(G, 'b32', num=2)
    assert dirs.options['affine_layers'] == ['b32.conv0', 'b32.conv1'] and dirs.layer_indices(0) == [5, 6, 7]
    with_rgb = sefa(G, 'b32', num=2, torgb=True)
    assert with_rgb.options['affine_layers'] == ['b16.torgb', 'b32.conv0', 'b32.conv1', 'b32.torgb']
    with pytest.raises(StylelensError, match="bad --layers 'b64'"):
        sefa(G, 'b64')


def test_sefa_on_stylegan3():
    from stylelens.vendor.stylegan3.networks import Generator

    torch.manual_seed(0)
    G3 = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=512,
                   channel_max=16).eval()
    layers = style_layers(G3)
    assert [layer.ws_index for layer in layers] == list(range(1, G3.num_ws))
    assert layers[-1].kind == 'torgb' and all(layer.kind == 'conv' for layer in layers[:-1])
    dirs = sefa(G3)
    names = [layer.name for layer in layers[:-1]]
    gain = G3.get_submodule(f'{names[0]}.affine').weight_gain
    _, singular, _ = np.linalg.svd(affine_weights(G3, names) * gain, full_matrices=False)
    np.testing.assert_allclose(dirs.scores, singular, rtol=1e-6)
    assert dirs.layer_indices(0) is None  # every ws


def test_sefa_refuses_generators_without_style_affines():
    from stylelens.scratch.models import build_models

    with pytest.raises(StylelensError, match='MappingDCGANGenerator has no style affine layers'):
        sefa(build_models('mapping-dcgan')[0])


# ------------------------------------------------------------------------------------------------ traverse

def test_direction_file_entries_traverse_their_own_layers(G, tmp_path):
    save_directions(tmp_path / 'd.npz', small_set(G, layers=[3, 4]))
    direction = direction_from_spec(G, f'{tmp_path / "d.npz"}:1', num_samples=PCA_SAMPLES)
    assert direction.layers == [3, 4] and '(t1)' in direction.label and direction.unit == 'σ'
    ws = traversal_ws(G, 5, direction, [1.0], direction.layers)
    delta = (ws[0] - seeds_to_ws(G, [5])[0]).norm(dim=1)
    assert (delta[[3, 4]] > 0).all() and (delta[[0, 1, 2, 5, 6, 7]] == 0).all()
    with pytest.raises(StylelensError, match='holds entries 0..2'):
        direction_from_spec(G, f'{tmp_path / "d.npz"}:3', num_samples=PCA_SAMPLES)
    with pytest.raises(StylelensError, match=r'pick one with .*d.npz:K'):
        direction_from_spec(G, str(tmp_path / 'd.npz'))


# ------------------------------------------------------------------------------------------------ supervised

def planted(count=400, dim=16, seed=0):
    rng = np.random.RandomState(seed)
    latents = rng.randn(count, dim)
    truth = np.zeros(dim)
    truth[:2] = [0.6, 0.8]
    other = np.zeros(dim)
    other[0] = 1.0
    return latents, truth, other, latents @ truth + 0.05 * rng.randn(count), latents @ other


def test_boundary_recovers_a_planted_direction():
    latents, truth, _, score, _ = planted()
    boundary = fit_boundary(latents, score)
    assert boundary.normal @ truth > 0.98 and boundary.accuracy == 1.0 and boundary.correlation > 0.95


def test_conditional_direction_is_orthogonal_to_its_condition():
    latents, truth, other, score, second = planted()
    scores = SeedScores(np.arange(len(score)), ['a', 'b'], np.stack([score, second], 1), 'test')
    dirs = supervised_directions(latents, scores, num_ws=3, targets=['a'], condition=['b'])
    assert abs(dirs.directions[0] @ other) < 0.05 and dirs.directions[0] @ truth > 0.7
    assert dirs.labels == ['a'] and dirs.score_name == 'held-out accuracy' and dirs.layers.all()
    assert orthogonalize(truth, other[None]) @ other == pytest.approx(0, abs=1e-12)


def test_supervised_with_too_few_seeds_or_unknown_scores_is_a_user_error():
    latents, _, _, score, _ = planted(count=10)
    with pytest.raises(StylelensError, match='at least 20'):
        supervised_directions(latents, SeedScores(np.arange(10), ['a'], score[:, None], 'x.csv'), num_ws=2)
    latents, _, _, score, _ = planted()
    with pytest.raises(StylelensError, match="no score 'c'"):
        supervised_directions(latents, SeedScores(np.arange(400), ['a'], score[:, None], 'x.csv'), num_ws=2,
                              targets=['c'])


def test_supervised_from_a_csv_finds_the_planted_w_direction(G, tmp_path):
    seeds = list(range(300))
    w = seeds_to_ws(G, seeds)[:, 0].double().numpy()
    truth = np.random.RandomState(1).randn(G.w_dim)
    rows = ['seed,planted'] + [f'{s},{float(v)!r}' for s, v in zip(seeds, w @ truth)]
    (tmp_path / 'scores.csv').write_text('\n'.join(rows) + '\n')
    latents, scores = scored_latents(G, scores=read_scores_csv(tmp_path / 'scores.csv'))
    dirs = supervised_directions(latents, scores, num_ws=G.num_ws, layers=[0, 1])
    assert dirs.scores[0] >= 0.85 and dirs.extras['correlation'][0] > 0.8  # 210 training seeds in 256 dims
    assert dirs.layer_indices(0) == [0, 1]
    assert dirs.directions[0] @ truth / np.linalg.norm(truth) > 0.5


@pytest.mark.parametrize('text, message', [
    ('seed,score\n1,0.5\n1,0.7\n', 'seed 1 more than once'),
    ('seed,score\n1,0.5\nx,0.7\n', "line 3: seed 'x' is not an integer"),
    ('seed,score\n1,0.5\n2,abc\n', "line 3: 'abc' is not a finite number"),
    ('seed,score\n1,0.5\n2,nan\n', "'nan' is not a finite number"),
    ('seed,score\n1,0.5\n2\n', 'line 3 has 1 columns, expected 2'),
    ('seed,score\n1,0.5\n', 'two rows'),
])
def test_bad_scores_csv_is_one_line(tmp_path, text, message):
    (tmp_path / 's.csv').write_text(text)
    with pytest.raises(StylelensError, match=message) as err:
        read_scores_csv(tmp_path / 's.csv')
    assert '\n' not in str(err.value)


def test_scores_csv_without_header_names_its_columns(tmp_path):
    (tmp_path / 's.csv').write_text('3,1.5,2\n4,0.5,1\n')
    scores = read_scores_csv(tmp_path / 's.csv')
    assert scores.names == ['score', 'score2'] and scores.seeds.tolist() == [3, 4]


# ------------------------------------------------------------------------------------------------ scorers

class Payload:
    def __reduce__(self):
        import os
        return os.system, ('touch PWNED',)


def test_scorer_files_that_would_run_code_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({'format': 'stylelens-classifier', 'x': Payload()}, tmp_path / 'evil.pt')
    torch.save(torch.nn.Linear(2, 2), tmp_path / 'module.pt')
    (tmp_path / 'plain.pkl').write_bytes(pickle.dumps(Payload()))
    for name in ('evil.pt', 'module.pt', 'plain.pkl'):
        with pytest.raises(StylelensError, match='does not load weights-only') as err:
            load_scorer(str(tmp_path / name))
        assert '\n' not in str(err.value)
    assert not (tmp_path / 'PWNED').exists()
    torch.save({'format': 'something-else'}, tmp_path / 'other.pt')
    with pytest.raises(StylelensError, match='neither a stylelens classifier nor a factor regressor'):
        load_scorer(str(tmp_path / 'other.pt'))


def test_shipped_factor_scorer_columns_and_gradients(G):
    scorer = load_scorer('factors')
    assert {'circle', 'x', 'size', 'hue_cos', 'light_sin'} <= set(scorer.names)
    ws = seeds_to_ws(G, [0, 1]).requires_grad_(True)
    scores = scorer.score(G.synthesis(ws, noise_mode='const'))
    assert scores.shape == (2, len(scorer.names))
    scores[:, scorer.column('size')].sum().backward()
    assert ws.grad.abs().sum() > 0


def test_w_plus_boundaries_fit_one_per_layer(G):
    scorer = load_scorer('factors')
    latents, scores = scored_latents(G, scorer=scorer, seeds=range(60), per_layer=True, batch_size=60)
    assert latents.shape == (60, G.num_ws, G.w_dim)
    assert not np.allclose(latents[:, 0], latents[:, 1])     # layers take their w from different seeds
    dirs = supervised_directions(latents, scores, num_ws=G.num_ws, targets=['x'])
    assert dirs.labels == [f'x@{k}' for k in range(G.num_ws)]
    assert [dirs.layer_indices(k) for k in range(G.num_ws)] == [[k] for k in range(G.num_ws)]
    with pytest.raises(StylelensError, match='pass --classifier instead of --scores'):
        scored_latents(G, scores=scores, per_layer=True)
