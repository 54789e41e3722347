"""The speed benchmark's plumbing, without timing anything: the report says when no ratio to NVIDIA's code was
measured and puts both columns side by side when one was; rounds alternate; checkouts are checked in one line; PNG
differences and the roofline share are computed right. Speed itself is measured by `make bench`, never by tests."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stylelens.bench import official, report, roofline, timing


def runs(median: float, **extra: float) -> dict:
    return dict(seconds=[median, median * 1.1], others=[0.0, 0.0], dropped_seconds=[], dropped_others=[],
                median_seconds=median, disturbed=0, **extra)


def fake_results(with_official: bool) -> dict:
    """A bench.json as the driver writes it, with made-up numbers."""
    roof = dict(summary={f'{p} batch {b}': dict(dtype=p, batch=b, seconds_per_image=s, gflops=g, best_layer_gflops=g,
                                                 gflops_by_layout=dict(nchw=g / 2, channels_last=g))
                         for p, b, s, g in (('fp32', 1, 0.15, 200.0), ('fp32', 8, 0.14, 210.0),
                                            ('bf16', 1, 0.08, 400.0), ('bf16', 8, 0.07, 420.0))})
    generate = {'fp32 batch 1': runs(3.4), 'fp32 batch 8': runs(3.0), 'bf16 batch 1': runs(2.6),
                'bf16 batch 8': runs(2.2)}
    mix = dict(loop_fp32=runs(4.5), mix_fp32=runs(3.5), mix_bf16=runs(2.5))
    if with_official:
        generate = dict(official=runs(4.6), **generate)
        mix = dict(official=runs(7.0), **mix)
        for group in (generate, mix):
            for r in group.values():
                r['speedup_vs_official'] = group['official']['median_seconds'] / r['median_seconds']
    for r in mix.values():
        r['speedup_vs_loop'] = mix['loop_fp32']['median_seconds'] / r['median_seconds']
    images = dict.fromkeys(['fp32 batch 8'], dict(files=8, max=1, mean=0.01, p99=0.0)) if with_official else {}
    synthesis = [dict(precision=p, batch=b, median_seconds=s * b, seconds=[s * b], disturbed=0, peak_rss_mib=900.0,
                      peak_delta_mib=500.0, flops=dict(executed=29.8e9, nominal=56.3e9))
                 for p, b, s in (('fp32', 1, 0.17), ('fp32', 8, 0.16), ('bf16', 1, 0.1), ('bf16', 8, 0.09))]
    return dict(
        mode='full', bench_seconds=540.0, contended_cpus=0.25, load_average_end=[0.3, 0.4, 0.5],
        machine=dict(cpu_model='Test CPU', cpu_flags=['avx512f', 'avx512_bf16'], bf16_units='bf16 vector dot products',
                     usable_cpus=2, torch=dict(version='2.x', threads=2, cpu_capability='AVX512'), python='3.11',
                     date_utc='2026-12-01T00:00:00Z', load_average=[0.2, 0.3, 0.4]),
        settings=dict(retry_disturbed=True, process_runs=5, synthesis_runs=5, import_runs=5, stage_runs=3,
                      modconv_runs=5),
        network=dict(g_params=24.8e6, built_by='test'),
        official=dict(checkout='/x', commit='d72cc7d') if with_official else None,
        stylegan3=dict(skipped='this is an alias-free StyleGAN3 generator') if with_official else None,
        roofline=roof, generate=dict(runs=generate, images_vs_official=images), mix=dict(runs=mix),
        synthesis=synthesis, imports={'`import torch`': runs(1.1)},
        stages=dict(precision='fp32', batch=8, stages={'import torch': 1.1, 'synthesis': 1.2}),
        modconv=dict(results=[]), probes=None, training=None,
    )


def test_without_official_no_ratio_is_claimed():
    text = report.render_markdown(fake_results(with_official=False))
    assert "no ratio to NVIDIA's code was measured" in text
    assert 'NVIDIA generate.py' not in text and 'faster' in text  # only the loop ratio of the mix table
    assert 'whole-process generate fp32 vs NVIDIA: no ratio measured' in text
    assert '**StyleGAN3**: not run' in text


def test_with_official_both_columns_and_shares_of_the_roofline():
    text = report.render_markdown(fake_results(with_official=True))
    assert '| NVIDIA generate.py, fp32 | 4.60 |' in text
    assert '| stylelens generate, fp32 batch 8 | 3.00 | 3.00 – 3.30 | 1.53× faster | 37 % |' in text  # 8 × 0.14 / 3
    assert 'generate fp32 vs NVIDIA: 1.53× (goal ≥ 1.5×): met' in text
    assert 'mix fp32 vs NVIDIA: 2.00× (goal ≥ 2.0×): met' in text
    assert 'synthesis fp32 batch 8: 88 % of the roofline (goal ≥ 85 %): met' in text
    assert 'fp32 batch 8: max 1, mean 0.01' in text
    assert 'skipped: stylelens does not load' in text


def test_alternate_runs_in_rounds():
    order: list[str] = []
    result = timing.alternate({'a': lambda: order.append('a'), 'b': lambda: order.append('b')}, runs=3, retry=False)
    assert order == ['a', 'b'] * 3 and len(result['a'].seconds) == len(result['b'].seconds) == 3


def test_checkout_errors_are_one_line(tmp_path):
    with pytest.raises(official.CheckoutError, match='missing: generate.py'):
        official.check_checkout(tmp_path, 'stylegan2-ada-pytorch')
    for name in ('generate.py', 'style_mixing.py', 'legacy.py', 'training/networks.py'):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("device = torch.device('cuda')\n")
    with pytest.raises(official.CheckoutError, match='git apply --unidiff-zero'):
        official.check_checkout(tmp_path, 'stylegan2-ada-pytorch')
    (tmp_path / 'generate.py').write_text("device = torch.device('cpu')\n")
    assert official.check_checkout(tmp_path, 'stylegan2-ada-pytorch').commit == 'd72cc7d'


def test_png_differences(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    a.mkdir(), b.mkdir()
    pixels = np.zeros((4, 4, 3), np.uint8)
    Image.fromarray(pixels).save(a / 'x.png')
    pixels[0, 0, 0] = 2
    Image.fromarray(pixels).save(b / 'x.png')
    diff = official.png_differences(a, b, ['x.png'])
    assert diff['max'] == 2 and diff['mean'] == pytest.approx(2 / 48)
    assert official.png_differences(a, b, ['missing.png']) is None


def test_roofline_shapes_and_share():
    from stylelens.vendor.stylegan2_ada.networks import Generator

    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  synthesis_kwargs=dict(channel_base=64, channel_max=16))
    shapes = roofline.synthesis_convolutions(G)
    up = [s for s in shapes if s.transposed]
    assert len(up) == 2 and all(s.kernel == 3 for s in up)  # b8.conv0 and b16.conv0, at their input resolution
    assert roofline.ConvShape(True, 16, 16, 3, 8).flops(2) == 2 * 16 * 16 * 9 * 64 * 2
    measured = roofline.Roofline(shapes, 1, 'fp32')
    summary = measured.summary([measured.measure()])
    assert summary['seconds_per_image'] > 0 and summary['flops_per_image'] > 0
    assert roofline.fraction(dict(summary={'fp32 batch 1': summary}), 'fp32', 1, summary['seconds_per_image']) == 1
    assert roofline.fraction(None, 'fp32', 1, 1.0) is None
