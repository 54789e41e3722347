"""From-scratch GAN family (DCGAN, WGAN-GP, ACGAN, conditional GAN): data, models, losses and training."""
