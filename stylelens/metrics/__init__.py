"""FID, KID and IS of generated images with the TensorFlow-ported Inception-v3 that published numbers use.

`compute_metrics` compares fakes with real data once; `FIDScorer` scores a generator repeatedly (e.g. per epoch);
`frechet_distance`, `kernel_inception_distance` and `inception_score` are the arithmetic on features alone.
"""
from stylelens.metrics.api import FIDScorer, compute_metrics
from stylelens.metrics.inception import FIDInceptionV3, load_inception
from stylelens.metrics.scores import frechet_distance, inception_score, kernel_inception_distance

__all__ = ['FIDInceptionV3', 'FIDScorer', 'compute_metrics', 'frechet_distance', 'inception_score',
           'kernel_inception_distance', 'load_inception']
