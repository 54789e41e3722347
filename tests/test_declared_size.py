"""Recorded build options that declare a network the file's tensors do not fill are refused before allocation.

A hostile (or damaged) snapshot can declare a generator of hundreds of gigabytes in its kwargs while holding a
few megabytes of tensors; the network is built on the meta device and every tensor compared before any memory is
allocated, so loading ends in one line naming the first disagreeing tensor, not an allocator traceback.
"""
from __future__ import annotations

import resource
import subprocess

import pytest

import stylelens
from conftest import tiny_snapshot, tiny_snapshot_path

HUGE_CHANNELS = 1 << 20  # a 3x3 conv of 2^20 x 2^20 channels alone would need 36 TiB of float32


def huge_snapshot_path(tmp_path):
    """A tiny snapshot whose G_ema kwargs declare 2^20 channels per layer (about 10^14 parameters)."""
    snapshot = tiny_snapshot()
    synthesis = snapshot['G_ema']._init_kwargs['synthesis_kwargs']
    synthesis.update(channel_base=HUGE_CHANNELS * 16, channel_max=HUGE_CHANNELS)
    return tiny_snapshot_path(tmp_path, snapshot=snapshot)


@pytest.mark.parametrize('load', [stylelens.load_network, stylelens.load_generator])
def test_declared_giant_is_refused_before_allocation(tmp_path, load):
    path = huge_snapshot_path(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(stylelens.StylelensError) as err:
        load(path)
    message = str(err.value)
    assert '\n' not in message and 'G_ema' in message and str(HUGE_CHANNELS) in message
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, f'peak memory grew by {grown_mib:.0f} MiB while refusing'


def test_info_on_a_declared_giant_is_one_line(tmp_path):
    path = huge_snapshot_path(tmp_path)
    result = subprocess.run(['stylelens', 'info', '--network', str(path)], capture_output=True, text=True)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(HUGE_CHANNELS) in lines[0], result.stderr
