"""The training-throughput benchmark (`stylelens.bench.training`) runs its cases and reports sane numbers: tiny
settings only (32x32, batch 8, a few steps); speed itself is measured by `make bench`, never by tests."""
from __future__ import annotations

import math
from dataclasses import asdict

import pytest

from stylelens.bench import training as bt

pytestmark = pytest.mark.usefixtures('one_thread')


def tiny(case: bt.Case) -> dict:
    return bt.worker(case, resolution=32, batch=8, device_name='cpu', warmup_steps=1, timed_steps=2, retry=False)


def test_cases_run_and_report_finite_throughput():
    cases = bt.cases_for(32, bt.QUICK, 'cpu')
    assert cases[0] == bt.Case('plain', 'fp32') and bt.Case('stylelens', 'fp32') in cases
    assert bt.Case('stylelens', 'bf16') in cases  # train's CPU precisions are all measured
    results = [tiny(case) for case in cases]
    for r in results:
        assert r['ok'], r.get('error')
        assert r['finite'] and len(r['losses']) == 3
        assert math.isfinite(r['images_per_second']) and r['images_per_second'] > 0
        assert len(r['seconds']) == 2 and all(s > 0 for s in r['seconds'])
    bt.summarize(results)
    plain, fp32, bf16 = results[0], results[1], results[2]
    assert plain['vs_plain'] == pytest.approx(1.0) and fp32['vs_plain'] > 0
    # Same seed, weights, real batch and first latents: the plain loop and train's step compute the same D loss.
    assert plain['quality_vs_fp32']['first_abs_diff_loss_d'] < 1e-5
    assert bf16['quality_vs_fp32']['steps'] == 3 and 'quality_vs_fp32' not in fp32
    assert bf16['channels_last'] and not fp32['channels_last']  # train's layout choice per precision


def test_markdown_lists_every_case_and_failures():
    ok = tiny(bt.Case('plain', 'fp32'))
    failed = dict(case=dict(loop='stylelens', precision='bf16', layout='train', compile='static'),
                  label='stylelens step, bf16 + torch.compile(dynamic=False)', ok=False, losses=[],
                  error='InductorError: boom')
    bt.summarize([ok, failed])
    out = dict(model='dcgan', batch=8, device='cpu', settings=asdict(bt.QUICK), contended_cpus=0.25,
               auto_precision='bf16', results={'32': [ok, failed]})
    text = bt.render_markdown(out)
    assert 'plain PyTorch loop, fp32' in text and '1.00×' in text
    assert '| 32² | stylelens step, bf16 + torch.compile(dynamic=False) | failed |' in text
    assert 'InductorError: boom' in text
