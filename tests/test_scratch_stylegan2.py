"""The procedural shapes data set and the compact StyleGAN2 trainer (`stylelens train --model stylegan2-small`)."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from conftest import run_stylelens
from stylelens.datasets import load_dataset
from stylelens.datasets.shapes import SHAPES, make_shapes, render, sample_factors
from stylelens.errors import StylelensError
from stylelens.generation import generate_images
from stylelens.loading.network import load_generator, load_network
from stylelens.scratch import stylegan2
from stylelens.scratch.config import TrainConfig
from stylelens.scratch.train import train
from stylelens.vendor.stylegan2_ada import ops

pytestmark = pytest.mark.usefixtures('one_thread')


def tiny(data: str = 'shapes:64', **options) -> TrainConfig:
    """Seconds-long: 16x16, widths 8, batch 8, 3 steps per epoch, R1 every 16 steps (so on the first)."""
    defaults = dict(model='stylegan2-small', data=data, epochs=1, batch=8, resolution=16, g_width=8,
                    d_width=8, map_depth=2, precision='fp32', device='cpu', grid=2, max_steps=3)
    return TrainConfig(**{**defaults, **options})


def test_shapes_are_deterministic_labeled_and_drawn_where_the_factors_say():
    pixels, labels = make_shapes(12, 32)
    again, _ = make_shapes(12, 32)
    test, _ = make_shapes(12, 32, 'test')
    assert pixels.shape == (12, 32, 32, 3) and pixels.dtype == np.uint8 and np.array_equal(pixels, again)
    assert not np.array_equal(pixels, test) and set(labels) <= set(range(len(SHAPES)))
    factors = sample_factors(1, 0)
    factors.update(shape=np.array([0]), cx=np.array([0.25]), cy=np.array([0.75]), size=np.array([0.2]))
    image = render(factors, 32)[0].astype(float)
    centre, corner = image[24, 8], image[2, 30]  # rows are y: the circle sits low and left
    assert np.abs(centre - corner).sum() > 60
    assert np.allclose(image[24, 8], image[23, 9], atol=2)  # the inside of the shape is one colour


def test_shapes_data_spec_with_classes_and_resolution():
    data = load_dataset('shapes:90:circle,triangle', resolution=16)
    assert data.resolution == 16 and data.class_names == SHAPES
    assert set(data.class_counts()) == {'circle', 'triangle'}
    with pytest.raises(StylelensError, match='image count'):
        load_dataset('shapes:many')
    with pytest.raises(StylelensError, match='valid: circle, square, triangle'):
        load_dataset('shapes:10:hexagon')


def test_network_has_the_official_layout_and_sizes():
    G, D = stylegan2.build_stylegan2(32, 3, g_width=32, d_width=16, map_depth=2)
    names = dict(G.named_parameters())
    assert {'mapping.fc1.weight', 'synthesis.b4.const', 'synthesis.b32.conv1.affine.weight',
            'synthesis.b32.torgb.weight'} <= set(names)
    assert G.synthesis.b16.conv1.out_channels == 64 and G.synthesis.b32.conv1.out_channels == 32
    assert D.b32.conv0.out_channels == 16 and G.num_ws == 8
    with pytest.raises(StylelensError, match='power-of-two'):
        stylegan2.build_stylegan2(28)


def test_fused_activation_keeps_gradients_of_the_plain_path():
    y = torch.randn(2, 3, 4, 4, requires_grad=True)
    scale, shift = torch.rand(2, 3) + 0.5, torch.randn(1, 3, 1, 1)
    fused = ops.scale_shift_lrelu(y, scale, shift, gain=math.sqrt(2), clamp=0.5)
    plain = (torch.nn.functional.leaky_relu(y * scale[:, :, None, None] + shift, 0.2) * math.sqrt(2)).clamp(-0.5, 0.5)
    grad_fused, = torch.autograd.grad(fused.square().sum(), y)
    grad_plain, = torch.autograd.grad(plain.square().sum(), y)
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(grad_fused, grad_plain)


def test_ema_half_life_and_ramp():
    G = torch.nn.Linear(1, 1, bias=False)
    G_ema = stylegan2.make_ema(G)
    with torch.no_grad():
        G.weight.fill_(1.0)
        G_ema.weight.fill_(0.0)
    stylegan2.update_ema(G_ema, G, images_seen=10**9, batch=1000, ema_kimg=1)  # one half-life
    assert G_ema.weight.item() == pytest.approx(0.5)
    stylegan2.update_ema(G_ema, G, images_seen=1, batch=1000, ema_kimg=1)  # ramp: early on, G_ema ~ G
    assert G_ema.weight.item() == pytest.approx(1.0)


def test_training_run_exports_an_official_snapshot_that_every_command_loads(tmp_path):
    summary = train(tiny(epochs=2), tmp_path / 'run', progress=False)
    rows = list(csv.DictReader(open(tmp_path / 'run' / 'steps.csv')))
    assert summary['steps'] == 6 and all(math.isfinite(float(r['loss_d'])) for r in rows)
    assert rows[0]['r1'] and not rows[1]['r1']  # lazy R1: every 16th step, the first included
    snapshot = tmp_path / 'run' / 'network-snapshot.pkl'
    net = load_network(snapshot)
    assert all(net[k] is not None for k in ('G', 'D', 'G_ema'))
    assert net['training_set_kwargs']['spec'] == 'shapes:64'
    G_ema = load_generator(snapshot)
    from_run = load_generator(tmp_path / 'run')
    for (name, a), b in zip(G_ema.state_dict().items(), from_run.state_dict().values()):
        assert torch.equal(a, b), name
    batch, = generate_images(G_ema, seeds=[0, 1])
    assert batch.images.shape == (2, 16, 16, 3)
    result = run_stylelens('mix', '--network', str(snapshot), '--rows', '1,2', '--cols', '3', '--preset', 'coarse',
                           '--outdir', str(tmp_path / 'mix'))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'mix' / 'grid.png').is_file()


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = train(tiny(epochs=2), tmp_path / 'whole', progress=False)
    train(tiny(epochs=1), tmp_path / 'part', progress=False)
    resumed = train(tiny(epochs=2), tmp_path / 'part', resume=True, progress=False)
    assert whole['final_metrics'] == resumed['final_metrics']
    a = torch.load(tmp_path / 'whole' / 'generator.pt', weights_only=True)['state_dict']
    b = torch.load(tmp_path / 'part' / 'generator.pt', weights_only=True)['state_dict']
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_shared_checkpoint_continues_in_a_new_folder_as_if_never_stopped(tmp_path):
    whole = train(tiny(epochs=2), tmp_path / 'whole', progress=False)
    train(tiny(epochs=1), tmp_path / 'part', progress=False)
    shared = tmp_path / 'shared.pt'
    shared.write_bytes((tmp_path / 'part' / 'checkpoints' / 'last.pt').read_bytes())
    moved = train(tiny(epochs=2), tmp_path / 'moved', resume_from=shared, progress=False)
    assert whole['final_metrics'] == moved['final_metrics']
    a = torch.load(tmp_path / 'whole' / 'generator.pt', weights_only=True)['state_dict']
    b = torch.load(tmp_path / 'moved' / 'generator.pt', weights_only=True)['state_dict']
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(StylelensError, match='already holds a training run'):
        train(tiny(epochs=3), tmp_path / 'moved', resume_from=shared, progress=False)
    with pytest.raises(StylelensError, match='--resume-from'):
        train(tiny(epochs=3), tmp_path / 'part', resume=True, resume_from=shared, progress=False)


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ('this must never be printed',))


def test_checkpoints_are_read_weights_only_and_anything_else_is_refused(tmp_path, capsys):
    evil = tmp_path / 'evil.pt'
    torch.save(dict(G={}, config={}, payload=_RunsCodeWhenUnpickled()), evil)
    with pytest.raises(StylelensError, match='weights_only=True refused it.*nothing in it was run'):
        train(tiny(), tmp_path / 'run', resume_from=evil, progress=False)
    assert 'never be printed' not in capsys.readouterr().out
    torch.save(dict(weights=torch.zeros(2)), tmp_path / 'other.pt')
    result = run_stylelens('train', '--model', 'stylegan2-small', '--data', 'shapes:64', '--outdir',
                           str(tmp_path / 'cli'), '--resume-from', str(tmp_path / 'other.pt'))
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert 'not a stylelens training checkpoint' in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize('options,message', [
    (dict(loss='hinge'), "loss for stylegan2-small 'hinge': choose one of bce"),
    (dict(optimizer='rmsprop'), '--optimizer rmsprop'),
    (dict(batch=6), 'divisible by 4'),
    (dict(g_depth=2), '--g-depth 2'),
    (dict(style_mixing=1.5), 'probability'),
])
def test_stylegan2_refuses_options_it_does_not_train_with(tmp_path, options, message):
    with pytest.raises(StylelensError, match=message):
        train(tiny(**options), tmp_path / 'run', progress=False)


def test_stylegan2_options_are_refused_for_other_models(tmp_path):
    with pytest.raises(StylelensError, match='--r1-gamma and --ema-kimg'):
        train(tiny(model='dcgan', r1_gamma=1.0), tmp_path / 'run', progress=False)


def test_demo_export_ships_the_network_and_a_checkpoint_that_training_continues_from(tmp_path):
    from stylelens import demo_network
    train(tiny(epochs=1), tmp_path / 'run', progress=False)
    out = demo_network.export_demo(tmp_path / 'run', tmp_path / 'ship' / 'demo.pkl', hours=0.1)
    record = load_network(out)['training_set_kwargs']
    assert record['steps'] == 3 and record['images_seen'] == 24 and record['train_hours'] == 0.1
    shipped = tmp_path / 'ship' / demo_network.TRAIN_CHECKPOINT
    continued = demo_network.continue_training(tmp_path / 'more', 2, 'cpu', shipped=shipped)
    assert continued['steps'] == 6
    assert demo_network.continue_training(tmp_path / 'more', 3, 'cpu', shipped=tmp_path / 'gone.pt')['steps'] == 9
    assert sorted(p.name for p in (tmp_path / 'more' / 'samples').glob('epoch*.png')) == \
        ['epoch001.png', 'epoch002.png', 'epoch003.png']
    assert demo_network.continue_training(tmp_path / 'same', 1, 'cpu', shipped=shipped)['steps'] == 3
    assert (tmp_path / 'same' / 'samples' / 'progress.gif').is_file()
    with pytest.raises(StylelensError, match='no demo training checkpoint'):
        demo_network.continue_training(tmp_path / 'new', 2, 'cpu', shipped=tmp_path / 'gone.pt')
