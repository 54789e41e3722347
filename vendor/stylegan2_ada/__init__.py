"""StyleGAN2-ADA networks with the official module tree, parameter and buffer names."""
