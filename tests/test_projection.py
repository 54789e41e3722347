"""`stylelens project` offline on the embedded demo network (and the oracle's conditional, StyleGAN3 and rosinality
networks): NVIDIA's schedule and statistics, recovery of a generated image, the files written, and bad inputs
refused in one line with nothing written. Perceptual losses use a self-built archive with seeded random weights."""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_torchscript_weights import save_vgg_archive

import stylelens
from conftest import run_stylelens
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws, synthesize
from stylelens.outputs import to_uint8
from stylelens.projection import ProjectionRequest, ProjectionSettings, project, psnr, run_projection, ssim
from stylelens.projection.objectives import check_loss, make_objective
from stylelens.projection.projector import frame_steps, noise_buffers, noise_regularization, w_statistics
from stylelens.projection.target import load_target

pytestmark = pytest.mark.filterwarnings('ignore:`torch.jit.:DeprecationWarning')


@pytest.fixture(scope='module')
def demo() -> torch.nn.Module:
    return stylelens.load_generator('demo')


@pytest.fixture(scope='module')
def generated(demo: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """seed 5 of the demo network (const noise) as a PNG, and its pixels."""
    pixels = to_uint8(synthesize(demo, seeds_to_ws(demo, [5])))[0]
    path = tmp_path_factory.mktemp('target') / 'seed5.png'
    Image.fromarray(pixels).save(path)
    return path, pixels


@pytest.fixture(scope='module')
def vgg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_vgg_archive(tmp_path_factory.mktemp('vgg') / 'vgg16.pt')[0]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """An empty cache per test (no VGG16 file in it) and one torch thread."""
    monkeypatch.setenv('STYLELENS_CACHE', str(tmp_path / 'cache'))


def test_schedule_and_w_statistics_follow_projector_py(demo: torch.nn.Module) -> None:
    s = ProjectionSettings(steps=1000)
    assert s.learning_rate(0) == 0 and s.learning_rate(25) == pytest.approx(0.05)
    assert s.learning_rate(500) == pytest.approx(0.1) and s.learning_rate(875) == pytest.approx(0.05)
    assert s.w_noise_scale(0, 2.0) == pytest.approx(0.1) and s.w_noise_scale(375, 2.0) == pytest.approx(0.025)
    assert s.w_noise_scale(750, 2.0) == 0 and frame_steps(1000)[:2] == [0, 10] and frame_steps(1000)[-1] == 999
    w_avg, w_std = w_statistics(demo, torch.zeros(1, 0), 300)
    z = torch.from_numpy(np.random.RandomState(123).randn(300, demo.z_dim))
    w = demo.mapping(z, None)[:, 0].detach()
    assert torch.allclose(w_avg[0, 0], w.mean(0), atol=1e-5) and w_avg.shape == (1, 1, demo.w_dim)
    assert w_std == pytest.approx(float((w - w.mean(0)).square().sum(1).mean().sqrt()), rel=1e-4)


def test_noise_regulariser_punishes_correlated_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    white = {'a': torch.randn(32, 32, generator=gen)}
    smooth = {'a': torch.nn.functional.interpolate(torch.randn(1, 1, 4, 4, generator=gen), size=32)[0, 0]}
    assert float(noise_regularization(white)) < 0.01 < float(noise_regularization(smooth))
    assert noise_regularization({}) == 0


def test_loss_decreases_in_a_few_steps_and_g_is_untouched(demo: torch.nn.Module,
                                                          generated: tuple[Path, np.ndarray]) -> None:
    before = {k: v.clone() for k, v in noise_buffers(demo.synthesis).items()}
    objective = make_objective('mse', generated[1], None, torch.device('cpu'))
    result = project(demo, objective, ProjectionSettings(steps=40, w_avg_samples=1000))
    dist = result.history['dist']
    assert np.mean(dist[-5:]) < 0.5 * dist[0] and result.noise_buffers == len(before) == 7
    assert result.ws.shape == (1, demo.num_ws, demo.w_dim) and torch.equal(result.ws[0, 0], result.ws[0, -1])
    assert result.frame_ws.shape[0] == len(result.frame_steps) == 40
    assert all(torch.equal(v, noise_buffers(demo.synthesis)[k]) for k, v in before.items())


def test_projection_recovers_a_generated_image_and_mix_reproduces_it(
        demo: torch.nn.Module, generated: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    request = ProjectionRequest(target=str(generated[0]), loss='mse', settings=ProjectionSettings(steps=300))
    summary = run_projection(demo, request, tmp_path / 'proj', network=dict(name='demo'), progress=False)
    proj = np.asarray(Image.open(tmp_path / 'proj' / 'proj.png'))
    assert psnr(generated[1], proj) == summary['distances']['psnr_db'] >= 30
    with np.load(tmp_path / 'proj' / 'projected_w.npz') as saved:
        assert saved.files == ['w'] and saved['w'].shape == (1, demo.num_ws, demo.w_dim)
    w_file = tmp_path / 'proj' / 'projected_w.npz'
    result = run_stylelens('mix', '--network', 'demo', '--rows', f'w:{w_file}', '--cols', f'w:{w_file}',
                           '--outdir', str(tmp_path / 'mix'))
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / 'mix' / 'projected_w.0-projected_w.0.png')), proj)


def test_cli_lpips_in_w_plus_writes_every_output(generated: tuple[Path, np.ndarray], vgg: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / 'proj'
    result = run_stylelens('project', '--target', str(generated[0]), '--space', 'w+', '--steps', '6', '--vgg',
                           str(vgg), '--seed', '7', '--device', 'cpu', '--outdir', str(out))
    assert result.returncode == 0, result.stderr
    assert 'PSNR' in result.stdout and 'LPIPS' in result.stdout and 'projecting' in result.stderr
    names = {p.name for p in out.iterdir()}
    assert names == {'projected_w.npz', 'proj.png', 'target.png', 'proj.gif', 'loss.csv', 'loss.png',
                     'distances.json', 'manifest.json'}
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['command'] == 'project' and manifest['options']['space'] == 'w+'
    assert manifest['options']['seed'] == 7 and manifest['extra']['vgg16']['sha256']
    distances = json.loads((out / 'distances.json').read_text())
    assert distances['lpips'] > 0 and distances['vgg'] > 0 and 0 < distances['ssim'] <= 1
    with np.load(out / 'projected_w.npz') as saved:
        w = saved['w']
    assert w.shape == (1, 8, 256) and not np.allclose(w[0, 0], w[0, -1])  # one w per index in W+
    assert len((out / 'loss.csv').read_text().splitlines()) == 7
    with Image.open(out / 'proj.gif') as gif:
        assert gif.n_frames >= 2 and gif.size == (512, 256)  # target | projection, 32 px enlarged 8x


def evil_pickle(path: Path, marker: Path) -> Path:
    """A 'network' whose pickle calls os.system."""
    path.write_bytes(b'\x80\x02cos\nsystem\n' + pickle.dumps(f'touch {marker}', 2)[2:-1] + b'\x85R.')
    return path


@pytest.mark.parametrize('case', ['not-an-image', 'rgba-target', 'missing-target', 'evil-vgg', 'evil-network',
                                  'class-on-unconditional'])
def test_bad_input_gets_one_line_and_writes_nothing(case: str, generated: tuple[Path, np.ndarray],
                                                    tmp_path: Path) -> None:
    marker = tmp_path / 'ran'
    args = ['--target', str(generated[0]), '--loss', 'mse', '--steps', '2']
    expected = {'not-an-image': 'is not an image', 'rgba-target': 'has 4 channels (RGBA) but the network',
                'missing-target': 'no such file', 'evil-vgg': 'os.system', 'evil-network': 'os.system',
                'class-on-unconditional': 'unconditional'}[case]
    if case == 'not-an-image':
        (tmp_path / 'notes.png').write_text('not a picture')
        args[1] = str(tmp_path / 'notes.png')
    elif case == 'rgba-target':
        Image.new('RGBA', (40, 30)).save(tmp_path / 'alpha.png')
        args[1] = str(tmp_path / 'alpha.png')
    elif case == 'missing-target':
        args[1] = str(tmp_path / 'nowhere.png')
    elif case == 'evil-vgg':
        evil = evil_pickle(tmp_path / 'data.pkl', marker)
        with zipfile.ZipFile(tmp_path / 'vgg16.pt', 'w') as archive:
            archive.write(evil, 'vgg16/data.pkl')
        args += ['--vgg', str(tmp_path / 'vgg16.pt')]
    elif case == 'evil-network':
        args += ['--network', str(evil_pickle(tmp_path / 'net.pkl', marker))]
    else:
        args += ['--class', '1']
    result = run_stylelens('project', *args, '--outdir', str(tmp_path / 'out'))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and 'Traceback' not in result.stderr and not result.stdout
    assert expected in lines[0]
    assert not (tmp_path / 'out').exists() and not marker.exists()


def test_lpips_without_weights_offline_says_how_to_get_them(generated: tuple[Path, np.ndarray], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('HTTPS_PROXY', 'http://127.0.0.1:1')  # the download is refused locally, nothing leaves
    monkeypatch.delenv('NO_PROXY', raising=False)
    monkeypatch.delenv('no_proxy', raising=False)
    result = run_stylelens('project', '--target', str(generated[0]), '--outdir', str(tmp_path / 'out'))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and not (tmp_path / 'out').exists()
    assert 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt' in lines[0]
    assert '--vgg PATH' in lines[0] and str(tmp_path / 'cache' / 'networks') in lines[0]


@pytest.mark.parametrize('fixture, noise_maps', [('sg2_cond32.pkl', 7), ('sg3r_32.pkl', 0), ('ros_32.pt', 7)])
def test_other_formats_and_conditional_networks_project(oracle_dir: Path, fixture: str, noise_maps: int,
                                                        tmp_path: Path) -> None:
    G = stylelens.load_generator(oracle_dir / fixture)
    torch.manual_seed(0)
    c = torch.zeros(1, G.c_dim)
    if G.c_dim:
        c[0, 3] = 1
    target = to_uint8(synthesize(G, G.mapping(torch.randn(1, G.z_dim), c)))[0]
    objective = make_objective('mse', target, None, torch.device('cpu'))
    result = project(G, objective, ProjectionSettings(steps=8, w_avg_samples=200), c=c)
    assert result.noise_buffers == noise_maps and result.ws.shape == (1, G.num_ws, G.w_dim)
    assert np.isfinite(result.history['loss']).all() and result.history['dist'][-1] < result.history['dist'][0]
    if G.c_dim:
        Image.fromarray(target).save(tmp_path / 't.png')
        with pytest.raises(StylelensError, match='conditional'):
            run_projection(G, ProjectionRequest(target=str(tmp_path / 't.png'), loss='mse'), tmp_path / 'out')
        assert not (tmp_path / 'out').exists()


def test_target_is_centre_cropped_and_channels_are_checked(tmp_path: Path) -> None:
    wide = np.zeros((40, 100, 3), dtype=np.uint8)
    wide[:, 30:70] = (200, 30, 60)  # the centre square; the sides are black
    Image.fromarray(wide).save(tmp_path / 'wide.png')
    assert (load_target(tmp_path / 'wide.png', 16, 3) == (200, 30, 60)).all()
    Image.fromarray(wide[:, :, 0]).save(tmp_path / 'gray.png')
    gray = load_target(tmp_path / 'gray.png', 8, 3)
    assert gray.shape == (8, 8, 3) and (gray == gray[:, :, :1]).all()
    with pytest.raises(StylelensError, match=r'has 3 channels \(RGB\) but the network makes images with 1 channel'):
        load_target(tmp_path / 'wide.png', 8, 1)
    with pytest.raises(StylelensError, match='use --loss mse'):
        check_loss('lpips', 4)


def test_psnr_and_ssim() -> None:
    gen = np.random.default_rng(0)
    a = gen.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + gen.integers(-10, 11, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, a) == float('inf') and ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b) ** 2)))
    assert ssim(a, b) < ssim(a, np.clip(a.astype(int) + 1, 0, 255).astype(np.uint8)) < 1
    ndimage = pytest.importorskip('scipy.ndimage')

    def reference(x: np.ndarray, y: np.ndarray) -> float:  # Gaussian filter, then only where the window fits
        blur = [ndimage.gaussian_filter(v, 1.5, truncate=3.5)[5:-5, 5:-5] for v in (x, y, x * x, y * y, x * y)]
        mx, my, xx, yy, xy = blur
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
        return float((((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean())

    expected = np.mean([reference(a[..., k].astype(float), b[..., k].astype(float)) for k in range(3)])
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)
