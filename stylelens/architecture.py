"""The module tree of a network with, per module, its output shape for one forward pass, parameter count and
whether its weights train — what `print(G)` shows, plus the numbers one needs to read it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from stylelens.probes import probe


@dataclass
class ModuleRow:
    """One module of the tree."""

    name: str
    depth: int
    class_name: str
    extra: str
    output_shapes: dict[str, list[int] | None] = field(default_factory=dict)
    parameters: int = 0
    trainable: str = '-'


def _shapes(value: Any) -> dict[str, list[int] | None]:
    if isinstance(value, dict):
        return {k: list(v.shape) if isinstance(v, torch.Tensor) else None for k, v in value.items()}
    return {'': list(value.shape)} if isinstance(value, torch.Tensor) else {}


def _trainable(module: torch.nn.Module) -> str:
    """'yes' if the module's own weights are parameters, 'frozen' if they are buffers (freeze-D), '-' if none."""
    own_params = any(True for _ in module.parameters(recurse=False))
    frozen = any(name in ('weight', 'bias') for name, _ in module.named_buffers(recurse=False))
    return 'frozen' if frozen and not own_params else 'yes' if own_params else '-'


def _example_inputs(net: torch.nn.Module, part: str) -> tuple:
    """Batch-1 inputs for one forward pass of `net` (seed-0 z, class 0 where conditional)."""
    gen = torch.Generator().manual_seed(0)
    device = next(net.parameters()).device
    if part in ('G', 'mapping'):
        G = net
        z = torch.randn([1, G.z_dim], generator=gen).to(device)
        c = torch.zeros([1, G.c_dim], device=device)
        if G.c_dim:
            c[:, 0] = 1
        return z, c
    if part == 'synthesis':
        return (torch.randn([1, net.num_ws, net.w_dim], generator=gen).to(device),)
    c = torch.zeros([1, net.c_dim], device=device)
    if net.c_dim:
        c[:, 0] = 1
    img = torch.randn([1, net.img_channels, net.img_resolution, net.img_resolution], generator=gen).to(device)
    return img, c


def module_rows(net: torch.nn.Module, part: str, max_depth: int | None = None) -> list[ModuleRow]:
    """Rows for `net` and its sub-modules (down to `max_depth`), with output shapes from a batch-1 forward."""
    shapes: dict[str, dict] = {}
    with probe(net, None, on_record=lambda name, value: shapes.__setitem__(name, _shapes(value))), torch.no_grad():
        root_output = net(*_example_inputs(net, part))
    rows = []
    for name, module in net.named_modules():
        depth = name.count('.') + 1 if name else 0
        if max_depth is not None and depth > max_depth:
            continue
        rows.append(ModuleRow(name=name, depth=depth, class_name=type(module).__name__,
                              extra=module.extra_repr(),
                              output_shapes=_shapes(root_output) if not name else shapes.get(name, {}),
                              parameters=sum(p.numel() for p in module.parameters()),
                              trainable=_trainable(module)))
    return rows


def format_rows(rows: list[ModuleRow]) -> str:
    """The tree as text, in the style of `print(G)` with shape, parameter and trainable columns."""
    def label(row: ModuleRow) -> str:
        head = f"({row.name.rsplit('.', 1)[-1]}): " if row.name else ''
        return '  ' * row.depth + f'{head}{row.class_name}' + (f'({row.extra})' if row.extra else '')

    def shape_text(row: ModuleRow) -> str:
        parts = [f'{k} {v}' if k else str(v) for k, v in row.output_shapes.items() if v is not None]
        return ', '.join(parts).replace(' [', '[') if parts else '-'

    labels = [label(r) for r in rows]
    width = min(max(len(t) for t in labels), 90)
    shape_width = max(len(shape_text(r)) for r in rows)
    lines = [f"{'module':<{width}}  {'output shape':<{shape_width}}  {'params':>11}  trainable"]
    for row, text in zip(rows, labels):
        lines.append(f'{text:<{width}}  {shape_text(row):<{shape_width}}  {row.parameters:>11,}  {row.trainable}')
    frozen = sum(1 for r in rows if r.trainable == 'frozen')
    lines.append(f'total parameters: {rows[0].parameters:,}' + (f' ({frozen} frozen layers hold their weights as '
                                                                f'buffers)' if frozen else ''))
    return '\n'.join(lines)
