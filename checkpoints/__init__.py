"""Data package: the registry of known networks and the embedded demo network."""
