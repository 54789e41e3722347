"""The projection benchmark's measuring path on the demo network (one case, two timed steps) and its table."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from stylelens.bench.projection import CASES, WARMUP_STEPS, Case, markdown, measure_case

DEMO = Path(__file__).resolve().parents[1] / 'checkpoints' / 'demo.pkl'


def test_one_case_is_measured_and_tabulated(one_thread: None) -> None:
    result = measure_case(DEMO, Case('w+', 'lpips', 'bf16'), steps=2, device_name='cpu')
    assert result['steps'] == 2 and result['steps_per_second'] > 0 and len(result['first_steps_seconds']) == WARMUP_STEPS
    assert result['case'] == dict(space='w+', loss='lpips', precision='bf16') and result['setup_seconds'] > 0
    official = dict(result, steps_per_second=result['steps_per_second'] / 4)
    table = markdown(dict(network=str(DEMO), device='cpu', warmup_steps=WARMUP_STEPS, load_average_start=None,
                          load_average_end=None, cases=[dict(result, case=asdict(CASES[0]))], official=official))
    assert '| stylelens, W, lpips, fp32 |' in table and '| 4.00× |' in table and 'Goal ≥ 2× per step' in table
    assert 'fp32: 4.00× (met)' in table
