"""Which layer, channel or style causes what: style channels (S space), activation patching, attribution and
ablation, all measured by the same metrics (stylelens.causes.metrics)."""
