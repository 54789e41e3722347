"""Clean-room network definitions whose module trees mirror the official pickles (installed as ``stylelens.vendor``)."""
