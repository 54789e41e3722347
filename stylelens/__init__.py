"""stylelens: take StyleGAN generators apart.

The public API is imported lazily, so `import stylelens` (and the CLI's start) stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = '0.1.0'

_EXPORTS = {
    'load_network': 'stylelens.loading.network',
    'load_generator': 'stylelens.loading.network',
    'StylelensError': 'stylelens.errors',
    'generate_images': 'stylelens.generation',
    'probe': 'stylelens.probes',
    'run_with_cache': 'stylelens.probes',
    'edit': 'stylelens.probes',
    'hook_names': 'stylelens.probes',
    'load_directions': 'stylelens.directions.format',
    'sefa': 'stylelens.directions.sefa',
    'with_input_transform': 'stylelens.input_transform',
}

# Modules reachable under a short name: `stylelens.patching` is `stylelens.causes.patching`.
_MODULES = {'patching': 'stylelens.causes.patching'}

__all__ = sorted(_EXPORTS) + sorted(_MODULES) + ['__version__']


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'stylelens' has no attribute {name!r}")
