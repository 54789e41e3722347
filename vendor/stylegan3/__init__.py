"""Alias-free StyleGAN3 (T and R) generator with the official module tree, parameter and buffer names."""
