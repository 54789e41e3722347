"""Directions in W: one file format (format), PCA of W (pca), SeFa (sefa), supervised boundaries from scores
(scores, supervised), `--direction` specs (spec), their figure, and the known-factor benchmark."""
