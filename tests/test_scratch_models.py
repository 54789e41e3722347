"""Scratch GAN models and losses: shapes, initialization, the StyleGAN surface of mapping-dcgan, loss values and
one training step of every model with every loss."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import stylelens
from stylelens.architecture import module_rows
from stylelens.errors import StylelensError
from stylelens.generation import seeds_to_ws
from stylelens.mixing import Donor, block_owned, mix_ws, parse_layers, render_grids
from stylelens.outputs import to_uint8
from stylelens.scratch.losses import LOSSES, default_loss, gradient_penalty
from stylelens.scratch.models import (
    MODELS,
    DCGANDiscriminator,
    DCGANGenerator,
    MappingDCGANGenerator,
    WGANCritic,
    build_models,
)
from stylelens.summary import synthesis_blocks
from stylelens.traversal import interpolation_ws

SMALL = dict(g_channels=8, d_channels=8, z_dim=16, w_dim=16, map_depth=2)
CONDITIONAL = ('acgan', 'cgan', 'acgan-cifar10-classic')
DCGAN_FAMILY = [m for m in MODELS if m != 'stylegan2-small']  # D(img, c) -> (logits, class logits)


def labels(n: int, classes: int) -> torch.Tensor:
    """One-hot labels [n, classes] cycling through the classes."""
    return torch.eye(classes)[torch.arange(n) % classes] if classes else torch.zeros(n, 0)


def variants() -> list[tuple[str, int, bool]]:
    """Every model at 28, 32 and 64 (the preset at 32), with the mapping generator where it is an option."""
    return [(m, r, mapping) for m in DCGAN_FAMILY for r in ([32] if m == 'acgan-cifar10-classic' else [28, 32, 64])
            for mapping in ([False, True] if m in ('dcgan', 'wgan-gp', 'acgan', 'cgan') else [False])]


@pytest.mark.parametrize('model,res,mapping', variants())
def test_shapes(model, res, mapping):
    for channels in ([3] if model == 'acgan-cifar10-classic' else [1, 3]):
        G, D = build_models(model, resolution=res, channels=channels, g_mapping=mapping, **SMALL)
        c = labels(4, 10 if model in CONDITIONAL else 0)
        img = G(torch.randn(4, 16), c)
        assert img.shape == (4, channels, res, res) and img.abs().max() <= 1
        logits, class_logits = D(img, c)
        assert logits.shape == (4,)
        assert (class_logits.shape == (4, 10)) if model.startswith('acgan') else class_logits is None


def test_conditional_models_need_labels():
    G, D = build_models('cgan', resolution=28, channels=1, **SMALL)
    with pytest.raises(StylelensError, match=r'\[N, 10\]'):
        G(torch.randn(2, 16), None)
    with pytest.raises(StylelensError, match='conditional'):
        D(torch.zeros(2, 1, 28, 28), labels(2, 3))
    assert D.b28[0].in_channels == 1 + 10  # label maps appended to the image


def test_dcgan_initialization():
    torch.manual_seed(0)
    G, D = DCGANGenerator(img_resolution=64, base_channels=64), DCGANDiscriminator(img_resolution=64)
    for net in (G, D):
        convs = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
        assert convs.std().item() == pytest.approx(0.02, rel=0.02) and abs(convs.mean().item()) < 1e-3
        scales = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
        assert scales.mean().item() == pytest.approx(1, abs=0.01)
        assert scales.std().item() == pytest.approx(0.02, rel=0.2)
    assert [m for m in G.modules() if isinstance(m, nn.ReLU)] and isinstance(list(G.modules())[-1], nn.Tanh)


@pytest.mark.parametrize('norm,kind', [('batch', nn.BatchNorm2d), ('layer', nn.GroupNorm),
                                       ('instance', nn.InstanceNorm2d), ('none', None), ('spectral', None)])
def test_discriminator_norms(norm, kind):
    D = DCGANDiscriminator(img_resolution=32, base_channels=8, norm=norm)
    assert D(torch.randn(2, 3, 32, 32))[0].shape == (2,)
    if kind is not None:
        assert sum(isinstance(m, kind) for m in D.modules()) == 2  # not on the first layer
    assert all(hasattr(m, 'parametrizations') == (norm == 'spectral') for m in D.modules() if isinstance(m, nn.Conv2d))


def test_wgan_critic_refuses_batch_norm():
    with pytest.raises(StylelensError, match='batch norm'):
        WGANCritic(norm='batch')
    with pytest.raises(StylelensError, match='batch norm'):
        build_models('wgan-gp', d_norm='batch', **SMALL)
    _, D = build_models('wgan-gp', **SMALL)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    D_bn = DCGANDiscriminator(base_channels=8)
    with pytest.raises(StylelensError, match='batch norm'):
        gradient_penalty(D_bn, torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32), labels(2, 0))


def test_classic_acgan_preset():
    G, D = build_models('acgan-cifar10-classic', z_dim=100)
    convs = [getattr(D, f'conv{i}') for i in range(1, 9)]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 1, 1, 2]
    assert all(c.out_channels == 196 and c.kernel_size == (3, 3) for c in convs)
    assert (D.fc1.out_features, D.fc10.out_features) == (1, 10) and isinstance(D.ln8, nn.LayerNorm)
    assert G.fc1.out_features == 196 * 16
    with pytest.raises(StylelensError, match='32x32 RGB'):
        build_models('acgan-cifar10-classic', resolution=28, channels=1)


# ------------------------------------------------------------------------------------------------ StyleGAN surface

@pytest.fixture(scope='module')
def mapping_G() -> MappingDCGANGenerator:
    torch.manual_seed(0)
    G = MappingDCGANGenerator(z_dim=16, w_dim=16, img_resolution=32, img_channels=3, base_channels=8, map_depth=2)
    with torch.no_grad():
        for p in G.parameters():  # noise strengths and style offsets away from their zero init
            p.add_(0.1 * torch.randn_like(p))
        G.mapping(torch.randn(64, 16), None, update_emas=True)
    return G.eval()


def test_mapping_generator_surface(mapping_G):
    G = mapping_G
    assert (G.z_dim, G.c_dim, G.w_dim, G.num_ws, G.img_resolution, G.img_channels) == (16, 0, 16, 5, 32, 3)
    assert G.mapping.num_layers == 2 and G.mapping.w_avg.abs().sum() > 0
    assert block_owned(G) == {'b4': [0], 'b8': [1], 'b16': [2], 'b32': [3, 4]}
    assert parse_layers(G, 'b4,b8') == [0, 1] and parse_layers(G, 'b32') == [3, 4]
    blocks = synthesis_blocks(G)
    assert [b['name'] for b in blocks] == ['b4', 'b8', 'b16', 'b32'] and blocks[0]['in_channels'] == 0
    z = torch.randn(2, 16, dtype=torch.float64)  # seeds_to_z gives float64
    ws = G.mapping(z, labels(2, 0))
    assert ws.shape == (2, 5, 16)
    img = G.synthesis(ws, noise_mode='const')
    assert img.shape == (2, 3, 32, 32)
    assert torch.equal(img, G(z, None, noise_mode='const'))
    assert torch.equal(img, G.synthesis(ws, noise_mode='const'))
    assert not torch.equal(G.synthesis(ws, noise_mode='random'), G.synthesis(ws, noise_mode='random'))
    assert not torch.equal(img, G.synthesis(ws, noise_mode='none'))


def test_architecture_listing(mapping_G):
    rows = {r.name: r for r in module_rows(mapping_G.synthesis, 'synthesis')}
    assert rows['b32'].output_shapes == {'x': [1, 4, 32, 32], 'img': [1, 3, 32, 32]}
    rows = {r.name: r for r in module_rows(build_models('cgan', **SMALL)[1].eval(), 'D')}
    assert rows['head'].output_shapes == {'': [1, 1, 1, 1]}


def test_each_block_reads_only_its_own_ws(mapping_G):
    G = mapping_G
    ws = G.mapping(torch.randn(1, 16), None)
    with stylelens.probe(G, ['b4', 'b8', 'b16']) as base:
        G.synthesis(ws, noise_mode='const')
    moved = ws.clone()
    moved[:, 1] += 1  # b8's index
    with stylelens.probe(G, ['b4', 'b8', 'b16']) as rec:
        G.synthesis(moved, noise_mode='const')
    assert torch.equal(rec['synthesis.b4']['x'], base['synthesis.b4']['x'])
    assert not torch.equal(rec['synthesis.b8']['x'], base['synthesis.b8']['x'])
    assert rec['synthesis.b8']['x'].shape == (1, 16, 8, 8) and rec['synthesis.b8']['img'] is None


def test_truncation_moves_ws_toward_w_avg(mapping_G):
    G = mapping_G
    z = torch.randn(3, 16)
    ws = G.mapping(z, None)
    half = G.mapping(z, None, truncation_psi=0.5)
    torch.testing.assert_close(half - G.mapping.w_avg, 0.5 * (ws - G.mapping.w_avg))
    cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], half[:, :2])
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:])


def test_mixing_and_traversal_run_unchanged(mapping_G):
    G = mapping_G
    row_ws, col_ws = seeds_to_ws(G, [1, 2]), seeds_to_ws(G, [3, 4])
    styles = parse_layers(G, 'b4,b8')
    grid, = render_grids(G, row_ws, col_ws, [styles], row_labels=['1', '2'], col_labels=['3', '4'])
    assert grid.cells.shape == (2, 2, 32, 32, 3)
    expected = to_uint8(G.synthesis(mix_ws(row_ws[1], [Donor('4', col_ws[1], styles)])[None], noise_mode='const'))
    assert np.abs(grid.cells[1, 1].numpy().astype(int) - expected[0].astype(int)).max() <= 1
    walk = interpolation_ws(G, [1, 2], space='w', frames=5)
    assert walk.shape == (5, 5, 16)
    torch.testing.assert_close(walk[[0, -1]], row_ws)


def test_conditional_mapping_generator():
    G = MappingDCGANGenerator(z_dim=8, c_dim=10, w_dim=8, img_resolution=28, img_channels=1, base_channels=8,
                              map_depth=2)
    assert list(G.synthesis.block_ws_ranges()) == ['b7', 'b14', 'b28'] and G.num_ws == 4
    ws = G.mapping(torch.randn(1, 8).expand(2, 8), labels(2, 10))
    assert not torch.equal(ws[0], ws[1])  # same z, different class
    assert G(torch.randn(2, 8), labels(2, 10)).shape == (2, 1, 28, 28)


# ------------------------------------------------------------------------------------------------ losses

class Linear(nn.Module):
    """A critic D(x) = <a, x> (with an optional class head returning fixed logits)."""

    def __init__(self, a: torch.Tensor, class_logits: torch.Tensor | None = None):
        super().__init__()
        self.a = nn.Parameter(a.flatten().clone())
        self.class_logits = class_logits

    def forward(self, x, c=None):
        return x.flatten(1) @ self.a, self.class_logits


def images(*values: float) -> torch.Tensor:
    """Images [N, 1, 2, 2] whose pixels sum to the given values (so a summing critic returns them)."""
    return torch.tensor(values).reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2) / 4


def test_bce_values():
    D, c = Linear(torch.ones(4)), labels(2, 0)
    out = LOSSES['bce'].d(D, images(2, -1), images(-1, 3), c)
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2 + (math.log1p(math.exp(-1)) +
                                                                           math.log1p(math.exp(3))) / 2
    assert out['loss_d'].item() == pytest.approx(expected, rel=1e-5)
    assert (out['acc_real'].item(), out['acc_fake'].item()) == (0.5, 0.5)
    assert LOSSES['bce'].g(D, images(0, 0), c)['loss_g'].item() == pytest.approx(math.log(2), rel=1e-6)


def test_hinge_and_wgan_values():
    unit, c = Linear(torch.full([4], 0.5)), labels(2, 0)  # ||a|| = 1, D(x) = sum(x) / 2
    out = LOSSES['hinge'].d(unit, images(1, 4), images(0, -6), c)  # logits real 0.5, 2; fake 0, -3
    assert out['loss_d'].item() == pytest.approx((0.5 + 0) / 2 + (1 + 0) / 2)
    assert LOSSES['hinge'].g(unit, images(1, 3), c)['loss_g'].item() == pytest.approx(-1)
    out = LOSSES['wgan-gp'].d(unit, images(2, 4), images(0, -2), c)
    assert out['wasserstein'].item() == pytest.approx(1.5 - (-0.5))  # logits real 1, 2; fake 0, -1
    assert out['gp'].item() == pytest.approx(0, abs=1e-10)
    assert out['loss_d'].item() == pytest.approx(-2, rel=1e-6)


def test_gradient_penalty():
    real, fake, c = torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4), labels(8, 0)
    a = torch.randn(48)
    assert gradient_penalty(Linear(a / a.norm()), real, fake, c).item() == pytest.approx(0, abs=1e-10)
    assert gradient_penalty(Linear(2 * a / a.norm()), real, fake, c).item() == pytest.approx(1, rel=1e-5)
    critic = WGANCritic(img_resolution=8, img_channels=3, base_channels=4)
    gp = gradient_penalty(critic, torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), labels(4, 0))
    assert gp.item() > 0
    gp.backward()
    assert critic.head.weight.grad.abs().sum() > 0  # the penalty trains the critic


def test_acgan_auxiliary_term():
    class_logits, c = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), labels(2, 2)
    D = Linear(torch.ones(4), class_logits)
    ce = torch.nn.functional.cross_entropy(class_logits, torch.tensor([0, 1])).item()
    d = LOSSES['bce'].d(D, images(0, 0), images(0, 0), c)
    assert d['aux'].item() == pytest.approx(2 * ce)  # on real and on fake
    assert d['loss_d'].item() == pytest.approx(2 * math.log(2) + 2 * ce)
    g = LOSSES['bce'].g(D, images(0, 0), c)
    assert g['aux'].item() == pytest.approx(ce) and g['loss_g'].item() == pytest.approx(math.log(2) + ce)


def test_default_losses():
    assert {m: default_loss(m) for m in MODELS} == {
        'dcgan': 'bce', 'mapping-dcgan': 'bce', 'wgan-gp': 'wgan-gp', 'acgan': 'bce', 'cgan': 'bce',
        'acgan-cifar10-classic': 'wgan-gp', 'stylegan2-small': 'bce'}
    with pytest.raises(StylelensError, match='unknown model'):
        default_loss('stylegan9')


@pytest.mark.parametrize('loss', sorted(LOSSES))
@pytest.mark.parametrize('model', DCGAN_FAMILY)
def test_one_training_step(model, loss):
    torch.manual_seed(0)
    d_norm = 'layer' if loss == 'wgan-gp' and model != 'acgan-cifar10-classic' else None
    G, D = build_models(model, resolution=32, channels=3, d_norm=d_norm, **SMALL)
    opt_g, opt_d = (torch.optim.Adam(net.parameters(), 2e-4, betas=(0.5, 0.999)) for net in (G, D))
    real, c = torch.rand(8, 3, 32, 32) * 2 - 1, labels(8, 10 if model in CONDITIONAL else 0)
    fake = G(torch.randn(8, 16), c)
    d_terms = LOSSES[loss].d(D, real, fake, c)
    opt_d.zero_grad()
    d_terms['loss_d'].backward()
    assert all(p.grad is None for p in G.parameters())
    assert all(p.grad is not None and p.grad.isfinite().all() for p in D.parameters() if p.requires_grad)
    opt_d.step()
    g_terms = LOSSES[loss].g(D, G(torch.randn(8, 16), c), c)
    opt_g.zero_grad()
    g_terms['loss_g'].backward()
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert grads and all(g.isfinite().all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    opt_g.step()
    assert all(v.isfinite() for v in {**d_terms, **g_terms}.values())
    assert ('aux' in d_terms) == model.startswith('acgan') and ('gp' in d_terms) == (loss == 'wgan-gp')
