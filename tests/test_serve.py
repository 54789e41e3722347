"""`stylelens serve` without a browser: the latest-wins worker, and the API through FastAPI's TestClient (images equal
to the library's, safety: loopback hosts, tokens, the network allow-list, W files read without pickle, snapshots)."""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import tiny_snapshot_path
from stylelens.generation import generate_images, seeds_to_ws, synthesize
from stylelens.input_transform import with_input_transform
from stylelens.loading.network import load_generator
from stylelens.mixing import Donor, grid_image, mix_ws, parse_layers, render_grids
from stylelens.outputs import to_uint8
from stylelens.serve.scheduler import LatestWins, Superseded

pytest.importorskip('fastapi', reason='the explorer needs FastAPI: pip install -e .[test]')
pytest.importorskip('httpx2', reason='the TestClient of FastAPI needs httpx2: pip install -e .[test]')
from fastapi.testclient import TestClient  # noqa: E402

from stylelens.serve.app import create_app, is_loopback  # noqa: E402
from stylelens.serve.explorer import Explorer, ExplorerConfig  # noqa: E402

LOCAL = 'http://127.0.0.1'


def decode(data_url: str) -> np.ndarray:
    """A data:image/png URL as an [H, W, C] uint8 array."""
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(',', 1)[1]))))
    return image if image.ndim == 3 else image[..., None]


# --------------------------------------------------------------------------------------------- latest wins

def test_latest_request_wins_and_lanes_take_turns():
    queue = LatestWins()
    started, gate, ran = threading.Event(), threading.Event(), []
    try:
        blocker = queue.submit('render', lambda: started.set() or gate.wait())
        assert started.wait(5)                               # the worker is busy with this one
        stale = [queue.submit('render', lambda k=k: ran.append(k)) for k in range(3)]
        grid = queue.submit('grid', lambda: ran.append('grid'))
        newest = queue.submit('render', lambda: ran.append('newest') or 'done')
        gate.set()
        assert blocker.result(5) is True
        assert newest.result(5) == 'done' and grid.result(5) is None
        for future in stale:
            with pytest.raises(Superseded):
                future.result(5)
        assert ran == ['newest', 'grid']   # render was busy first: it keeps its turn, with only the newest job
    finally:
        queue.close()


# --------------------------------------------------------------------------------------------- the API

@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """PCA statistics and digests go to a cache of the test's own."""
    monkeypatch.setenv('STYLELENS_CACHE', str(tmp_path / 'cache'))


@pytest.fixture(scope='module')
def network(tmp_path_factory):
    return str(tiny_snapshot_path(tmp_path_factory.mktemp('net'), img_resolution=16))


@pytest.fixture(scope='module')
def G(network):
    return load_generator(network)


def make_client(tmp_path, networks, token=None, **config):
    """A TestClient on a fresh explorer (W files under tmp_path/w) and its worker queue."""
    (tmp_path / 'w').mkdir(exist_ok=True)
    explorer = Explorer(ExplorerConfig(networks, tmp_path / 'w', outdir=tmp_path / 'out', device='cpu', **config))
    queue = LatestWins()
    return TestClient(create_app(explorer, queue, token), base_url=LOCAL), queue


@pytest.fixture
def client(tmp_path, network):
    client, queue = make_client(tmp_path, [network])
    yield client
    queue.close()


def state(network, **fields):
    return dict(network=network, **fields)


def test_render_equals_generate_and_mixing_equals_mix(client, network, G):
    plain = client.post('/api/render', json=state(network, base='5', truncation_psi=0.7))
    expected = next(generate_images(G, [5], truncation_psi=0.7)).images[0]
    assert plain.status_code == 200 and np.array_equal(decode(plain.json()['image']), expected)

    mixed = client.post('/api/render', json=state(network, base='5', mix_source='12', mix_layers='b8'))
    ws = seeds_to_ws(G, [5, 12])
    want = to_uint8(synthesize(G, mix_ws(ws[:1], [Donor('12', ws[1], parse_layers(G, 'b8'))])))[0]
    assert np.abs(decode(mixed.json()['image']).astype(int) - want).max() <= 1

    grid = client.post('/api/grid', json=state(network, base='5', mix_source='12', mix_layers='b8',
                                               grid_rows='5,6', grid_cols='12,13'))
    rows, cols = seeds_to_ws(G, [5, 6]), seeds_to_ws(G, [12, 13])
    want = grid_image(render_grids(G, rows, cols, [parse_layers(G, 'b8')], row_labels=['5', '6'],
                                   col_labels=['12', '13'])[0]).numpy()
    assert np.array_equal(decode(grid.json()['image']), want)


def test_activations_channels_and_spectrum(client, network):
    mean = client.post('/api/render', json=state(network, hook='b8.conv1')).json()['activation']
    assert mean['shape'][1:] == [8, 8] and mean['channels'] == mean['shape'][0]
    channel = client.post('/api/render', json=state(network, hook='b8.conv1', channel=2, norm='symmetric')).json()
    spectrum = client.post('/api/render', json=state(network, hook='b8.conv1', channel=2, view='spectrum')).json()
    assert decode(channel['activation']['image']).shape == (8, 8, 3) and 'dB' in spectrum['activation']['note']
    assert channel['activation']['image'] != spectrum['activation']['image']
    styles = client.post('/api/render', json=state(network, hook='mapping.fc1')).json()['activation']
    assert styles['shape'][:2] == [1, 1]
    bad = client.post('/api/render', json=state(network, hook='b8.conv1', channel=999))
    assert bad.status_code == 400 and 'channel 999 does not exist' in bad.json()['error']


def test_directions_move_the_image(client, network):
    still = client.post('/api/render', json=state(network, base='3')).json()['image']
    for spec in ('pca:0', 'sefa:1'):
        moved = client.post('/api/render', json=state(network, base='3', direction=spec, direction_value=2.0))
        assert moved.status_code == 200 and moved.json()['image'] != still, spec


def test_unknown_network_is_refused_in_one_line(client, tmp_path):
    answer = client.get('/api/info', params=dict(network=str(tmp_path / 'elsewhere.pkl')))
    assert answer.status_code == 403
    message = answer.json()['error']
    assert 'not named at start-up and is not in the registry' in message and '\n' not in message


def test_w_files_are_read_without_pickle(client, network, G, tmp_path):
    np.save(tmp_path / 'w' / 'start.npy', np.zeros((3, G.w_dim), np.float32))     # in the --wdir folder
    assert client.get('/api/info', params=dict(network=network)).json()['w_files'] == [dict(name='start.npy', rows=3)]
    bad = io.BytesIO()
    np.save(bad, np.array([{'w': 1}], dtype=object), allow_pickle=True)   # an object array: needs unpickling
    answer = client.post('/api/wfiles', params=dict(network=network, name='evil.npy'), content=bad.getvalue())
    assert answer.status_code == 400
    assert answer.json()['error'].startswith("cannot read W file 'evil.npy'") and '\n' not in answer.json()['error']
    assert not list((tmp_path / 'out' / 'uploads').rglob('evil.npy'))
    for name in ('../up.npz', 'x.pkl'):
        assert client.post('/api/wfiles', params=dict(network=network, name=name), content=b'').status_code == 400

    ws = torch.randn(2, G.num_ws, G.w_dim) * 0.5
    good = io.BytesIO()
    np.savez(good, w=ws.numpy())
    stored = client.post('/api/wfiles', params=dict(network=network, name='proj.npz'), content=good.getvalue())
    assert stored.json() == dict(name='proj.npz', rows=2)
    shown = client.post('/api/render', json=state(network, base='w:proj.npz@1')).json()['image']
    assert np.array_equal(decode(shown), to_uint8(synthesize(G, ws[1:]))[0])
    missing = client.post('/api/render', json=state(network, base='w:other.npz@0'))
    assert missing.status_code == 400 and 'unknown W file' in missing.json()['error']


def test_snapshot_writes_commands_images_and_manifest(client, network):
    answer = client.post('/api/snapshot', json=state(network, base='5', mix_source='12', mix_layers='b8',
                                                     hook='b8.conv1')).json()
    folder = Path(answer['folder'])
    assert {p.name for p in folder.iterdir()} == {'image.png', 'grid.png', 'activation.png', 'commands.sh',
                                                  'manifest.json'}
    manifest = json.loads((folder / 'manifest.json').read_text())
    assert manifest['command'] == 'serve snapshot' and manifest['options']['mix_source'] == '12'
    assert manifest['extra']['image_reproduced_exactly'] is True
    script = (folder / 'commands.sh').read_text()
    assert '--base 5 --source b8=seed:12 --outdir cli/mix' in script and '--rows 5 --cols 12 --blocks b8' in script


def test_snapshot_of_a_w_file_and_of_a_sefa_direction(client, network, G, tmp_path):
    np.savez(tmp_path / 'w' / 'start.npz', w=np.zeros((2, G.num_ws, G.w_dim), np.float32))
    answer = client.post('/api/snapshot', json=state(network, base='w:start.npz@1')).json()
    assert '--rows w:w/start.npz@1 --cols w:w/start.npz@1 --styles 0 --outdir cli/w' in answer['commands'][0]['command']
    assert answer['image_reproduced_exactly'] and (Path(answer['folder']) / 'w' / 'start.npz').is_file()

    answer = client.post('/api/snapshot', json=state(network, base='3', direction='sefa:1', direction_value=1.5)).json()
    first, second = (c['command'] for c in answer['commands'])
    assert first.startswith('stylelens directions sefa') and first.endswith('--figure-rows 0 --out cli/sefa.npz')
    assert '--seed 3 --direction cli/sefa.npz:1 --range 1.5,1.5 --steps 1' in second
    assert answer['image_reproduced_exactly'] is False   # traverse draws a labelled figure, not the raw pixels


def test_stylegan3_class_and_transform(tmp_path):
    from test_stylegan3 import snapshot_path, tiny_sg3

    G = tiny_sg3(c_dim=2)
    network = str(snapshot_path(tmp_path, G))
    client, queue = make_client(tmp_path, [network])
    try:
        info = client.get('/api/info', params=dict(network=network)).json()
        assert info['alias_free'] and info['classes'] == ['0', '1']
        moved = client.post('/api/render', json=state(network, base='4', class_idx='1', translate_x=0.2, rotate=10))
        want = next(generate_images(with_input_transform(G, (0.2, 0.0), 10), [4], class_idx=1)).images[0]
        assert np.array_equal(decode(moved.json()['image']), want)
        unconditional = client.post('/api/render', json=state(network, base='4'))
        assert unconditional.status_code == 400 and 'conditional' in unconditional.json()['error']
    finally:
        queue.close()


# --------------------------------------------------------------------------------------------- safety

def test_token_is_required_off_loopback(tmp_path, network):
    assert is_loopback('127.0.0.1') and is_loopback('::1') and is_loopback('localhost')
    assert not is_loopback('0.0.0.0') and not is_loopback('192.168.1.5')
    client, queue = make_client(tmp_path, [network], token='s3cret')
    try:
        assert client.get('/api/networks').status_code == 401
        assert client.get('/api/networks', headers={'x-stylelens-token': 'wrong'}).status_code == 401
        assert client.get('/api/networks', headers={'x-stylelens-token': 's3cret'}).status_code == 200
        page = client.get('/', params=dict(token='s3cret'))
        assert page.status_code == 200 and 'stylelens explorer' in page.text
        assert client.get('/static/app.js').status_code == 200   # the cookie the page got carries the token
    finally:
        queue.close()


def test_loopback_server_answers_loopback_hosts_and_its_own_pages_only(client, network):
    assert client.get('/api/networks').status_code == 200
    assert client.get('/api/networks', headers={'host': 'attacker.example'}).status_code == 400
    upload = dict(url='/api/wfiles', params=dict(network=network, name='x.npz'), content=b'')  # a raw body
    assert client.post(**upload, headers={'origin': 'http://attacker.example'}).status_code == 403
    assert client.post(**upload, headers={'origin': 'http://127.0.0.1'}).status_code == 400   # refused as a W file
    same = client.post('/api/render', json=state(network), headers={'origin': 'http://127.0.0.1'})
    assert same.status_code == 200


def test_cli_names_the_install_when_fastapi_is_missing(monkeypatch):
    from stylelens.cli import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'fastapi' else real(name, *a))
    result = CliRunner().invoke(cli, ['serve'])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: stylelens serve needs FastAPI and uvicorn: pip install 'stylelens[serve]'"
