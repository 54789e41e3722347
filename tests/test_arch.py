"""`stylelens arch` and the module rows behind it."""
from __future__ import annotations

import json
import subprocess

from conftest import tiny_networks
from stylelens.architecture import format_rows, module_rows
from stylelens.probes import hook_names


def test_rows_cover_every_hook_point_with_shapes_and_counts():
    nets = tiny_networks(d_architecture='skip')
    G, D = nets['G_ema'], nets['D']
    rows = module_rows(G, 'G')
    assert [r.name for r in rows] == [''] + hook_names(G)
    by_name = {r.name: r for r in rows}
    assert by_name[''].output_shapes == {'': [1, 3, 16, 16]}
    assert by_name['synthesis.b8'].output_shapes == {'x': [1, 32, 8, 8], 'img': [1, 3, 8, 8]}
    assert by_name['mapping'].output_shapes == {'': [1, G.num_ws, G.w_dim]}
    assert by_name[''].parameters == sum(p.numel() for p in G.parameters())
    assert by_name['synthesis.b8.conv1'].trainable == 'yes' and by_name['synthesis'].trainable == '-'
    d_rows = {r.name: r for r in module_rows(D, 'D')}
    assert d_rows['b4'].output_shapes == {'': [1, 1]} and d_rows['b16'].output_shapes['img'] == [1, 3, 8, 8]
    text = format_rows(module_rows(G, 'G', max_depth=2))
    assert '(b8): SynthesisBlock(resolution=8, architecture=skip)' in text
    assert 'conv1' not in text and text.splitlines()[-1].startswith('total parameters:')


def test_arch_cli(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(['stylelens', 'arch', *args], cwd=tmp_path, capture_output=True, text=True)

    result = run('--part', 'synthesis', '--depth', '1')
    assert result.returncode == 0 and '(b32): SynthesisBlock' in result.stdout and 'conv0' not in result.stdout
    assert '(b64)' not in result.stdout  # b32 is the demo's last block
    rows = json.loads(run('--part', 'D', '--json').stdout)
    assert rows[0]['class_name'] == 'Discriminator' and any(r['name'] == 'b4.mbstd' for r in rows)
    bad = run('--part', 'E')
    assert bad.returncode != 0 and 'G, D, mapping, synthesis' in bad.stderr.replace("'", '')
