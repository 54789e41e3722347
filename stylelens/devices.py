"""Choosing the torch device and numeric precision from `--device` / `--precision`."""
from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import ContextManager

import torch

from stylelens.choices import DEVICE_CHOICES, TRAIN_PRECISION_CHOICES, check_choice
from stylelens.errors import StylelensError


def pick_device(name: str = 'auto') -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device that is not available is an error."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available()
    if name == 'auto':
        return torch.device('cuda' if cuda else 'mps' if mps else 'cpu')
    check_choice(name, DEVICE_CHOICES, 'device')
    if (name == 'cuda' and not cuda) or (name == 'mps' and not mps):
        available = ', '.join(['cpu'] + (['cuda'] if cuda else []) + (['mps'] if mps else []))
        raise StylelensError(f'device {name!r} is not available here (available: {available})')
    return torch.device(name)


def precision_context(precision: str, device: torch.device) -> ContextManager:
    """fp32: plain float32 (official parity). bf16 / fp16: autocast of convolutions and matmuls to bfloat16 (opt-in)
    or float16 (training only, with loss scaling)."""
    if precision == 'fp32':
        return contextlib.nullcontext()
    if precision == 'bf16':
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == 'fp16':
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    raise StylelensError(f"unknown precision {precision!r}: choose one of {', '.join(TRAIN_PRECISION_CHOICES[1:])}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on CPU and on CUDA where bf16 is supported, fp16 (with loss scaling) on older CUDA GPUs, fp32
    elsewhere. On CPU fp16 measured no faster than bf16 and needs loss scaling, so auto never picks it there."""
    if precision != 'auto':
        return precision
    if device.type == 'cpu' or (device.type == 'cuda' and torch.cuda.is_bf16_supported()):
        return 'bf16'
    return 'fp16' if device.type == 'cuda' else 'fp32'


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process (glibc: no mmap for big blocks, no trimming) for the rest of its life.

    Large activations are otherwise mapped and unmapped on every op, and the page faults cost more than the
    arithmetic (measured: synthesis at batch 8 took 45 % less time). Meant for short-lived CLI processes, called
    after the network is loaded so loading does not raise the peak memory; returns False where it does not apply.
    """
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL('libc.so.6')
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2 ** 31 - 1))
    except (OSError, AttributeError):
        return False
