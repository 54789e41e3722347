"""The shapes data set's known factors read off images: a small regressor trained on the drawn shapes (shipped in
checkpoints/), its readout and its reproducible training."""
