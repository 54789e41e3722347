"""`stylelens metrics` end to end on the real architecture with seeded random weights saved in the real file's
layout (no network): weight checks, the real-feature cache, fakes from networks, samplers and folders, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import cifar_subset, run_stylelens, tiny_snapshot_path
from stylelens.errors import StylelensError
from stylelens.metrics import FIDScorer, compute_metrics, load_inception
from stylelens.metrics.api import parse_metrics
from stylelens.metrics.features import cache_path, dataset_key
from stylelens.metrics.fetch import official_sha256
from stylelens.metrics.inception import FIDInceptionV3, build_inception

OFFICIAL_SHA256 = '6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2'


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded weights for the FID Inception that keep activations O(1) (He-scaled convolutions, batch norms near
    identity), keyed as pytorch-fid's file."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in FIDInceptionV3().state_dict().items():
        noise = torch.randn(value.shape, generator=gen) if value.is_floating_point() else None
        if key.endswith('conv.weight'):
            state[key] = noise * (2 / value[0].numel()) ** 0.5
        elif key.endswith('running_var'):
            state[key] = 1 + 0.1 * noise.abs()
        elif key.endswith(('running_mean', 'bn.bias')):
            state[key] = 0.1 * noise
        elif key.endswith('bn.weight'):
            state[key] = 1 + 0.1 * noise
        elif key.startswith('fc.'):
            state[key] = 0.05 * noise
        else:
            state[key] = value  # num_batches_tracked
    return state


@pytest.fixture(scope='module')
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp('inception') / 'random_inception.pth'
    torch.save(random_inception_state(), path)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> Path:
    """A fresh cache per test; one torch thread, as the CLI runs get (tiny batches gain nothing from more)."""
    monkeypatch.setenv('STYLELENS_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


def images(n: int, seed: int, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_registry_names_the_weights_with_their_full_sha256() -> None:
    from stylelens.metrics.fetch import weights_entry

    entry = weights_entry()
    assert entry.url.endswith('/fid_weights/pt_inception-2015-12-05-6726825d.pth')
    assert official_sha256() == OFFICIAL_SHA256 and OFFICIAL_SHA256.startswith('6726825d')


def test_network_gives_pool3_features_and_logits(weights: Path) -> None:
    network = load_inception(weights)
    batch = images(2, seed=0)
    features, logits = network(batch)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008) and features.dtype == torch.float32
    assert (features >= 0).all() and features.std() > 0.01  # means of ReLU outputs, not collapsed
    gray = batch[:, :1]
    assert torch.allclose(network(gray)[0], network(gray.expand(-1, 3, -1, -1).contiguous())[0])
    assert not network.official and network.describe()['sha256'] == network.sha256


def test_weights_load_with_or_without_batch_norm_counters(tmp_path: Path) -> None:
    state = {k: v for k, v in random_inception_state(1).items() if not k.endswith('num_batches_tracked')}
    torch.save(state, tmp_path / 'bare.pth')
    net = build_inception(tmp_path / 'bare.pth')
    assert torch.equal(net.fc.weight, state['fc.weight']) and not net.training


def test_wrong_weights_are_refused_in_one_line(tmp_path: Path) -> None:
    state = random_inception_state(2)
    del state['Mixed_6b.branch7x7_2.conv.weight']
    state['fc.weight'] = torch.zeros(1000, 2048)
    state['AuxLogits.fc.weight'] = torch.zeros(1000, 768)
    torch.save(state, tmp_path / 'wrong.pth')
    with pytest.raises(StylelensError) as err:
        build_inception(tmp_path / 'wrong.pth')
    message = str(err.value)
    assert '\n' not in message and 'missing: Mixed_6b.branch7x7_2.conv.weight' in message
    assert 'unexpected: AuxLogits.fc.weight' in message and 'wrong shape: fc.weight (1000, 2048)' in message
    torch.save({'not': 'tensors'}, tmp_path / 'plain.pth')
    with pytest.raises(StylelensError, match='not an Inception state dict'):
        build_inception(tmp_path / 'plain.pth')
    (tmp_path / 'junk.pth').write_bytes(b'not a torch file')
    with pytest.raises(StylelensError, match='weights_only=True refused it'):
        build_inception(tmp_path / 'junk.pth')


def test_real_features_are_cached_by_pixels_and_reused(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stylelens.metrics import api

    real, fakes = images(4, seed=1), images(4, seed=2)
    first = compute_metrics('kid', real=real, fake=lambda n, seed: fakes[seed:seed + n], num=4, batch=2,
                            inception=weights, kid_subsets=3, progress=False)
    assert first['real'] == dict(source='4 images given', cache='miss', num=4) and first['kid']['mean'] != 0
    assert cache_path(dataset_key(real, load_inception(weights))).is_file()
    calls = []
    original = api.extract
    monkeypatch.setattr(api, 'extract', lambda *a, **k: calls.append(k['label']) or original(*a, **k))
    again = compute_metrics('kid', real=real, fake=lambda n, seed: fakes[seed:seed + n], num=4, batch=2,
                            inception=weights, kid_subsets=3, progress=False)
    assert again['real']['cache'] == 'hit' and calls == ['fake images'] and again['kid'] == first['kid']


def test_float_and_uint8_samples_score_the_same(weights: Path) -> None:
    fakes = images(3, seed=3)
    as_float = fakes.float() / 127.5 - 1 + 1e-4  # the official conversion truncates: nudge above each level
    uint8 = compute_metrics('is', fake=lambda n, s: fakes[s:s + n], num=3, inception=weights, is_splits=1,
                            progress=False)
    floats = compute_metrics('is', fake=lambda n, s: as_float[s:s + n], num=3, inception=weights, is_splits=1,
                             progress=False)
    assert floats['is'] == uint8['is'] and uint8['real'] is None


def test_statistics_npz_serves_fid_but_not_kid(weights: Path, tmp_path: Path) -> None:
    fakes = images(3, seed=4)
    sample = lambda n, s: fakes[s:s + n]  # noqa: E731
    rng = np.random.default_rng(0)
    np.savez(tmp_path / 'stats.npz', mu=rng.normal(size=2048), sigma=np.eye(2048))
    result = compute_metrics('fid', real=tmp_path / 'stats.npz', fake=sample, num=3, inception=weights,
                             progress=False)
    assert result['real']['cache'] == 'given' and result['fid'] > 0
    with pytest.raises(StylelensError, match='only statistics'):
        compute_metrics('kid', real=tmp_path / 'stats.npz', fake=sample, num=3, inception=weights, progress=False)


def test_scorer_samples_a_training_generator_in_eval_mode_and_restores_it(weights: Path) -> None:
    from stylelens.metrics.inputs import generator_sampler
    from stylelens.scratch.models import build_models

    torch.manual_seed(0)
    G, _ = build_models('dcgan', resolution=16, z_dim=8, num_classes=0)
    G.train()
    sample = generator_sampler(G)
    assert torch.equal(sample(3, 5)[1:], sample(2, 6)) and G.training  # per-seed z, eval-mode batch norm
    scorer = FIDScorer(images(3, seed=5), num=3, batch=2, inception=weights)
    fid = scorer.score(G)
    assert G.training and np.isfinite(fid) and fid > 0 and scorer.real_cache == 'miss'
    assert scorer.score(sample) == pytest.approx(fid, rel=1e-9)  # a sampler of the same G: the same fakes


def test_a_folder_with_generator_pt_is_a_run_not_images(tmp_path: Path) -> None:
    from stylelens.metrics.inputs import open_fake

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'sample.png')
    assert open_fake(tmp_path).pixels.shape == (1, 3, 8, 8)
    (tmp_path / 'generator.pt').write_bytes(b'junk')
    with pytest.raises(StylelensError, match='not a loadable stylelens train generator'):
        open_fake(tmp_path)


def test_unknown_metric_names_the_choices() -> None:
    with pytest.raises(StylelensError, match='choices: fid, kid, is'):
        parse_metrics('fid,lpips')
    assert parse_metrics('IS,fid') == ('fid', 'is')


# ------------------------------------------------------------------------------------------------------------ CLI

def test_cli_scores_a_network_against_cifar(weights: Path, tmp_path: Path) -> None:
    network = tiny_snapshot_path(tmp_path)
    out = tmp_path / 'out' / 'scores.json'
    result = run_stylelens('metrics', '--metric', 'fid,kid,is', '--real', f'cifar10:{cifar_subset()}', '--num-real',
                           '4', '--fake', str(network), '--num', '4', '--batch', '2', '--is-splits', '2',
                           '--kid-subsets', '5', '--inception', str(weights), '--device', 'cpu', '--out', str(out),
                           timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('FID ') and '(4 fake vs 4 real)' in result.stdout
    assert "not pytorch-fid's file" in result.stderr
    manifest = json.loads(out.read_text())
    scores = manifest['extra']
    assert scores['fid'] > 0 and scores['kid']['subset_size'] == 4 and scores['is']['splits'] == 2
    assert scores['real']['cache'] == 'miss' and scores['fake']['seeds'] == [0, 3]
    assert manifest['command'] == 'metrics' and manifest['network']['path'] == str(network)


def test_cli_scores_an_image_folder_against_itself(weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / 'images'
    folder.mkdir()
    for i, image in enumerate(images(3, seed=6, size=8).permute(0, 2, 3, 1).numpy()):
        Image.fromarray(image).save(folder / f'{i}.png')
    result = run_stylelens('metrics', '--real', str(folder), '--fake', str(folder), '--inception', str(weights),
                           '--device', 'cpu', '--out', str(tmp_path / 'scores.json'))
    assert result.returncode == 0, result.stderr
    assert abs(float(result.stdout.split()[1].rstrip(','))) < 1e-3  # FID of a set with itself
    assert result.stdout.rstrip().endswith(f"(3 fake vs 3 real); written to {tmp_path / 'scores.json'}")
    scores = json.loads((tmp_path / 'scores.json').read_text())['extra']
    assert scores['fake'] == dict(source=str(folder), seeds=None, network=None) and scores['real']['num'] == 3


def test_cli_without_weights_says_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('HTTPS_PROXY', 'http://127.0.0.1:1')  # the download is refused locally, nothing leaves
    monkeypatch.delenv('NO_PROXY', raising=False)
    monkeypatch.delenv('no_proxy', raising=False)
    result = run_stylelens('metrics', '--metric', 'is', '--fake', 'demo', '--num', '2')
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and not result.stdout
    assert 'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/' in lines[0]
    assert OFFICIAL_SHA256 in lines[0] and '--inception PATH' in lines[0]
    assert str(tmp_path / 'cache' / 'networks') in lines[0] and 'by itself when github.com is reachable' in lines[0]


def test_cli_refuses_a_bad_real_value_in_one_line(weights: Path) -> None:
    result = run_stylelens('metrics', '--real', 'nowhere', '--fake', 'demo', '--inception', str(weights))
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert "--real 'nowhere': no such file or folder; expected a data spec" in result.stderr
