"""Projecting images into W and W+ (NVIDIA's projector.py algorithm), with a VGG16/LPIPS distance of our own whose
weights are read from NVIDIA's TorchScript archive without running it."""
from stylelens.projection.job import ProjectionRequest, run_projection
from stylelens.projection.perceptual import PerceptualDistance, VGG16Features
from stylelens.projection.projector import ProjectionResult, ProjectionSettings, project
from stylelens.projection.quality import psnr, ssim
from stylelens.projection.vgg_weights import load_vgg16

__all__ = ['PerceptualDistance', 'ProjectionRequest', 'ProjectionResult', 'ProjectionSettings', 'VGG16Features',
           'load_vgg16', 'project', 'psnr', 'run_projection', 'ssim']
