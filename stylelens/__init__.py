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
    'with_input_transform': 'stylelens.input_transform',
}

__all__ = sorted(_EXPORTS) + ['__version__']


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stylelens' has no attribute {name!r}")
