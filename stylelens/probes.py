"""Named hook points on any network: record activations, cache a whole forward pass, or edit activations in flight.

Hook points are the modules' dotted names (`mapping.fc3`, `synthesis.b32`, `synthesis.b32.conv1.affine`, D's
`b32.conv0`; StyleGAN3 `synthesis.input`, `synthesis.L3_36_512`, ...). Short forms resolve when they name exactly
one module by suffix (`b32.conv1`, `L3_36_512.affine`), StyleGAN3 layers also without their size (`L3`). Hooks are
removed when the `with` block ends, also when the forward pass raises.
"""
from __future__ import annotations

import contextlib
import difflib
import re
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import torch

from stylelens.errors import StylelensError

# Tuple outputs of these module classes are recorded as named parts.
OUTPUT_PARTS = {'SynthesisBlock': ('x', 'img'), 'DiscriminatorBlock': ('x', 'img')}

Recorded = Union[torch.Tensor, dict]
EditFn = Callable[[torch.Tensor], torch.Tensor]


def hook_names(model: torch.nn.Module) -> list[str]:
    """Every hook point of `model`, in module-tree order (the root itself is not a hook point)."""
    return [name for name, _ in model.named_modules() if name]


def _expand_layer_alias(name: str, names: Sequence[str]) -> str:
    """StyleGAN3 short layer names: `L3` in `L3`, `L3.affine` or `synthesis.L3` stands for the one
    `L3_<size>_<channels>` module; other names unchanged."""
    layers = {part for n in names for part in n.split('.') if re.fullmatch(r'L\d+_\d+_\d+', part)}

    def expand(part: str) -> str:
        found = [layer for layer in layers if layer.split('_')[0] == part]
        return found[0] if re.fullmatch(r'L\d+', part) and len(found) == 1 else part

    return '.'.join(expand(part) for part in name.split('.'))


def resolve_name(model: torch.nn.Module, name: str, names: Sequence[str] | None = None) -> str:
    """The full dotted name for `name`: exact, or the one hook point ending in `.name` (StyleGAN3 layers also by
    their short name, `L3` for `synthesis.L3_36_512`); else a one-line error."""
    names = hook_names(model) if names is None else names
    if name in names:
        return name
    name = _expand_layer_alias(name, names)
    if name in names:
        return name
    matches = [n for n in names if n.endswith('.' + name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise StylelensError(f"hook point {name!r} is ambiguous: it matches {', '.join(matches)}")
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    close += [n for n in difflib.get_close_matches(name, [n.split('.', 1)[-1] for n in names], n=5, cutoff=0.6)
              if n not in close]
    hint = f"close matches: {', '.join(close[:5])}" if close else f"e.g. {', '.join(names[:4])}"
    raise StylelensError(f'no hook point {name!r} in {type(model).__name__} ({hint}; '
                         f'`stylelens arch` lists them all)')


def resolve_names(model: torch.nn.Module, names: Iterable[str] | None) -> list[str]:
    """Full names for a list of (possibly short) names; None means every hook point."""
    all_names = hook_names(model)
    if names is None:
        return all_names
    return [resolve_name(model, n, all_names) for n in names]


def _store(value: torch.Tensor | None, detach: bool, device: str | None,
           dtype: torch.dtype | None) -> torch.Tensor | None:
    """A recorded copy: detached, moved and cast as asked (cloned so in-place ops later cannot change it)."""
    if value is None:
        return None
    if detach:
        value = value.detach()
    out = value.to(device=device or value.device, dtype=dtype if dtype is not None and value.is_floating_point()
                   else value.dtype)
    return out.clone() if out.data_ptr() == value.data_ptr() else out


def _named_parts(module: torch.nn.Module, output: Any) -> dict[str, Any] | None:
    """{'x': ..., 'img': ...} for tuple outputs (generic '0', '1', ... for unknown classes); None for tensors."""
    if not isinstance(output, tuple):
        return None
    labels = OUTPUT_PARTS.get(type(module).__name__, ())
    return {labels[i] if i < len(labels) else str(i): part for i, part in enumerate(output)}


class Recording(dict):
    """What a probe recorded: hook name -> tensor, or -> {'x': tensor, 'img': tensor or None} for blocks."""

    def tensor(self, name: str, part: str | None = None) -> torch.Tensor:
        """One recorded tensor; blocks give their feature map `x` unless another part is named."""
        value = self[name]
        return value[part or 'x'] if isinstance(value, dict) else value


@contextlib.contextmanager
def probe(model: torch.nn.Module, names: Iterable[str] | None = None, *, detach: bool = True,
          device: str | None = 'cpu', dtype: torch.dtype | None = None,
          on_record: Callable[[str, Recorded], None] | None = None) -> Iterator[Recording]:
    """Record the outputs of the named hook points during forward passes inside the `with` block.

    `device='cpu'` moves copies off the accelerator (None keeps them where they are); `dtype=torch.float16`
    halves memory. With `on_record`, each output is handed to the callback instead of being kept (streaming).
    Several forward passes overwrite earlier records of the same hook point.
    """
    full_names = resolve_names(model, names)
    recording = Recording()
    handles = []

    def make_hook(name: str) -> Callable:
        def hook(module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            parts = _named_parts(module, output)
            if parts is None:
                value: Recorded = _store(output, detach, device, dtype)
            else:
                value = {k: _store(v, detach, device, dtype) if isinstance(v, torch.Tensor) or v is None else v
                         for k, v in parts.items()}
            if on_record is not None:
                on_record(name, value)
            else:
                recording[name] = value
        return hook

    try:
        for name in full_names:
            handles.append(model.get_submodule(name).register_forward_hook(make_hook(name)))
        yield recording
    finally:
        for handle in handles:
            handle.remove()


def run_with_cache(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor | None = None,
                   names: Iterable[str] | None = None, *, detach: bool = True, device: str | None = 'cpu',
                   dtype: torch.dtype | None = None, **forward_kwargs: Any) -> tuple[torch.Tensor, Recording]:
    """Run `G(z, c, **forward_kwargs)` once and return `(output, cache)` of all (or the named) hook points."""
    with probe(G, names, detach=detach, device=device, dtype=dtype) as cache, torch.no_grad():
        output = G(z, c, **forward_kwargs)
    return output, cache


@contextlib.contextmanager
def edit(model: torch.nn.Module, edits: dict[str, EditFn], *, part: str = 'x') -> Iterator[None]:
    """Replace hook points' outputs in flight: `{name: fn}` where fn(tensor) returns the new tensor.

    For blocks (tuple outputs) `fn` edits the named part (`x` by default, `img` for the RGB path).
    """
    resolved = {resolve_name(model, name): fn for name, fn in edits.items()}
    handles = []

    def make_hook(fn: EditFn) -> Callable:
        def hook(module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
            parts = _named_parts(module, output)
            if parts is None:
                return fn(output)
            if part not in parts:
                raise StylelensError(f"{type(module).__name__} has no output part {part!r} "
                                     f"(parts: {', '.join(parts)})")
            parts[part] = fn(parts[part]) if parts[part] is not None else None
            return tuple(parts.values())
        return hook

    try:
        for name, fn in resolved.items():
            handles.append(model.get_submodule(name).register_forward_hook(make_hook(fn)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _channel_index(channels: int | Sequence[int]) -> list[int]:
    return [channels] if isinstance(channels, int) else list(channels)


def zero_channels(channels: int | Sequence[int]) -> EditFn:
    """An edit that sets the given channels (dim 1) to zero."""
    return scale_channels(channels, 0.0)


def scale_channels(channels: int | Sequence[int], factor: float) -> EditFn:
    """An edit that multiplies the given channels (dim 1) by `factor`."""
    index = _channel_index(channels)

    def fn(x: torch.Tensor) -> torch.Tensor:
        if max(index) >= x.shape[1] or min(index) < -x.shape[1]:
            raise StylelensError(f'channel {max(index)} does not exist: this activation has {x.shape[1]} channels '
                                 f'(0..{x.shape[1] - 1})')
        x = x.clone()
        x[:, index] = x[:, index] * factor
        return x
    return fn


def replace_with(value: torch.Tensor) -> EditFn:
    """An edit that replaces the output by `value` (broadcast to the batch)."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        if value.shape[1:] != x.shape[1:]:
            raise StylelensError(f'replacement has shape {list(value.shape)} but the activation is {list(x.shape)}')
        return value.to(x.dtype).expand_as(x)
    return fn
