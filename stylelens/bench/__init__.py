"""The stylelens benchmarks: how fast `stylelens generate` is on a paper256-scale generator, and where time goes.

Run them as ``python -m stylelens.bench [--out DIR] [--quick]`` (``make bench`` writes to ``bench/results``). The
driver (`stylelens.bench.driver`)

1. builds, once, a paper256-scale StyleGAN2 (fixed-seed random weights; G, D and G_ema in the official snapshot
   layout, written with `dump_snapshot`) at ``DIR/paper256.pkl``, so every timing goes through the real load path
   (`stylelens.bench.network`);
2. times whole ``stylelens generate --seeds 0-7`` processes (wall clock, median of N runs) in fp32 and bf16, at
   batch 1 and 8, against the official code's time on the same CPU, the same for a ``stylelens mix`` grid, the
   imports, and the steps of one generate run (`stylelens.bench.generate`);
3. times ``G.synthesis`` in-process (images/s, GFLOP/s from the convolution shapes, peak RSS) and compares our
   shared-weight modulated convolution with the fused grouped-convolution formulation that the official code runs
   in eval mode, on real layers at 256x256 and 64x64 (`stylelens.bench.ops`);
4. runs the probe benchmark (`stylelens.bench.probes`);
5. times `stylelens train` steps of the from-scratch DCGAN (32x32 and 64x64, batch 128) against a plain PyTorch
   training loop of the same networks, per precision (`stylelens.bench.training`).

Results go to ``DIR/bench.json`` (with machine information) and ``DIR/bench.md`` (Markdown tables for the
README, also printed on stdout, `stylelens.bench.report`); progress goes to stderr. Speed is measured here, never by
timed tests.

Everything that imports torch runs in a fresh worker process (``--worker NAME``), so each measurement starts from
the same state and memory peaks belong to one configuration. Every timed run also records how much CPU *other*
processes used meanwhile (`stylelens.bench.timing`, shared by all of them); in a full run, a run disturbed by more
than `CONTENDED_CPUS` is repeated (at most as many extra runs as planned ones), and results that still include
disturbed runs are marked. The benchmarks call the library (and whole `stylelens` processes), never `stylelens.cli`.
"""
