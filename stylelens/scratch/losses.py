"""GAN objectives for the scratch models: non-saturating BCE, hinge and WGAN-GP, with ACGAN's auxiliary term.

Every term is called as `d(D, real, fake, c)` or `g(D, fake, c)` with `D(img, c) -> (logits, class_logits)` and
returns a dict of scalar tensors: `loss_d` / `loss_g` (with gradients) and detached metrics (`acc_real`,
`acc_fake`, `wasserstein`, `gp`, `aux`) where they apply, so training logs every objective the same way. The
auxiliary class cross-entropy is added to both terms whenever D has a class head (ACGAN). `fake` is detached in
the D term, and conditional models should make `fake` from the same labels `c` as `real`.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stylelens.errors import StylelensError

Terms = dict[str, torch.Tensor]
_DEFAULT_LOSS = {'dcgan': 'bce', 'mapping-dcgan': 'bce', 'wgan-gp': 'wgan-gp', 'acgan': 'bce', 'cgan': 'bce',
                 'acgan-cifar10-classic': 'wgan-gp', 'stylegan2-small': 'bce'}
_ONLY_LOSSES = {'stylegan2-small': ('bce',)}  # its trainer computes StyleGAN2's own non-saturating loss


class GANLoss(NamedTuple):
    """One objective: the discriminator term `d(D, real, fake, c)` and the generator term `g(D, fake, c)`."""

    d: Callable[..., Terms]
    g: Callable[..., Terms]


def aux_loss(class_logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """ACGAN's auxiliary cross-entropy between D's class logits and the one-hot labels c."""
    return F.cross_entropy(class_logits, c.argmax(dim=1))


def _add_aux(terms: Terms, key: str, class_logits: list[torch.Tensor | None], c: torch.Tensor,
             weight: float) -> Terms:
    """Add the summed auxiliary cross-entropy of the given class logits to `terms[key]` when D has a class head."""
    if class_logits[0] is None:
        return terms
    aux = sum(aux_loss(logits, c) for logits in class_logits)
    terms[key] = terms[key] + weight * aux
    terms['aux'] = aux.detach()
    return terms


def accuracies(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Terms:
    """How often D calls real images real (logit > 0) and fake images fake."""
    return dict(acc_real=(real_logits > 0).float().mean(), acc_fake=(fake_logits < 0).float().mean())


def bce_d(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor, *, aux_weight: float = 1.0) -> Terms:
    """Binary cross-entropy on logits: -log sigmoid(D(real)) - log(1 - sigmoid(D(fake)))."""
    (real_logits, real_class), (fake_logits, fake_class) = D(real, c), D(fake.detach(), c)
    terms = dict(loss_d=F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean(),
                 **accuracies(real_logits.detach(), fake_logits.detach()))
    return _add_aux(terms, 'loss_d', [real_class, fake_class], c, aux_weight)


def bce_g(D: nn.Module, fake: torch.Tensor, c: torch.Tensor, *, aux_weight: float = 1.0) -> Terms:
    """Non-saturating generator loss: -log sigmoid(D(fake))."""
    logits, class_logits = D(fake, c)
    return _add_aux(dict(loss_g=F.softplus(-logits).mean()), 'loss_g', [class_logits], c, aux_weight)


def hinge_d(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor, *,
            aux_weight: float = 1.0) -> Terms:
    """Hinge loss: relu(1 - D(real)) + relu(1 + D(fake))."""
    (real_logits, real_class), (fake_logits, fake_class) = D(real, c), D(fake.detach(), c)
    terms = dict(loss_d=F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean(),
                 **accuracies(real_logits.detach(), fake_logits.detach()))
    return _add_aux(terms, 'loss_d', [real_class, fake_class], c, aux_weight)


def hinge_g(D: nn.Module, fake: torch.Tensor, c: torch.Tensor, *, aux_weight: float = 1.0) -> Terms:
    """Generator side of the hinge loss (and of WGAN): -D(fake)."""
    logits, class_logits = D(fake, c)
    return _add_aux(dict(loss_g=-logits.mean()), 'loss_g', [class_logits], c, aux_weight)


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty ((||grad D(x_hat)||_2 - 1)^2).mean() at random interpolates x_hat of real and fake
    (differentiable w.r.t. D's parameters). Refuses critics with batch norm, whose samples are not independent."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules()):
        raise StylelensError('the WGAN-GP gradient penalty needs a critic without batch norm '
                             "(use the D with norm 'layer' or 'none')")
    eps = torch.rand([real.shape[0]] + [1] * (real.ndim - 1), device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(D(x_hat, c)[0].sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).square().mean()


def wgan_gp_d(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor, *, gp_weight: float = 10.0,
              aux_weight: float = 1.0) -> Terms:
    """Critic loss D(fake) - D(real) + gp_weight * GP; `wasserstein` is the estimate D(real) - D(fake)."""
    (real_logits, real_class), (fake_logits, fake_class) = D(real, c), D(fake.detach(), c)
    wasserstein = real_logits.mean() - fake_logits.mean()
    gp = gradient_penalty(D, real, fake, c)
    terms = dict(loss_d=-wasserstein + gp_weight * gp, wasserstein=wasserstein.detach(), gp=gp.detach())
    return _add_aux(terms, 'loss_d', [real_class, fake_class], c, aux_weight)


LOSSES: dict[str, GANLoss] = {
    'bce': GANLoss(bce_d, bce_g),
    'hinge': GANLoss(hinge_d, hinge_g),
    'wgan-gp': GANLoss(wgan_gp_d, hinge_g),
}


def default_loss(model: str) -> str:
    """The loss name a model trains with by default (a key of LOSSES)."""
    if model not in _DEFAULT_LOSS:
        raise StylelensError(f"unknown model {model!r}: choose one of {', '.join(_DEFAULT_LOSS)}")
    return _DEFAULT_LOSS[model]


def accepted_losses(model: str) -> tuple[str, ...]:
    """The loss names (keys of LOSSES) `model` trains with: all of them unless its trainer fixes one."""
    default_loss(model)
    return _ONLY_LOSSES.get(model, tuple(LOSSES))
