"""The stylelens benchmarks: how fast `stylelens generate` is on a paper256-scale generator, and where time goes.

Run them as ``python -m stylelens.bench [--out DIR] [--quick] [--official DIR1] [--stylegan3 DIR2]`` (``make bench
[OFFICIAL=DIR1] [STYLEGAN3=DIR2]`` writes to ``bench/results``). The driver (`stylelens.bench.driver`)

1. builds, once, a paper256-scale StyleGAN2 (fixed-seed random weights; G, D and G_ema in the official snapshot
   layout) at ``DIR/paper256.pkl`` with stylelens's code (`stylelens.bench.network`), or, given a patched checkout of
   NVIDIA's stylegan2-ada-pytorch, at ``DIR/paper256-official.pkl`` with NVIDIA's own classes
   (`stylelens.bench.official`), so both sides read one file and every timing goes through the real load path;
2. times whole ``stylelens generate --seeds 0-7`` processes (wall clock, median of N runs) in fp32 and bf16, at
   batch 1 and 8, and a ``stylelens mix`` grid, in alternation with NVIDIA's ``generate.py`` and
   ``style_mixing.py`` when a checkout is given (their PNGs compared with ours), and with a stylegan3 checkout
   ``gen_images.py`` on a StyleGAN3-T network; then the imports and the steps of one generate run
   (`stylelens.bench.generate`); without a checkout no ratio to NVIDIA's code is claimed;
3. times ``G.synthesis`` in-process (images/s, GFLOP/s, peak RSS) in alternation with the roofline, the same
   convolutions alone (`stylelens.bench.roofline`), and compares our shared-weight modulated convolution with the
   fused grouped form the official code runs in eval mode (`stylelens.bench.ops`);
4. runs the probe benchmark, with the peak memory of ``activations`` at 1024² (`stylelens.bench.probes`);
5. times `stylelens train` steps of the from-scratch DCGAN (32x32 and 64x64, batch 128) against a plain PyTorch
   training loop of the same networks, per precision (`stylelens.bench.training`).

Results go to ``DIR/bench.json`` (with machine information: CPU model and flags) and ``DIR/bench.md`` (Markdown
tables for the README, also printed on stdout, `stylelens.bench.report`); progress goes to stderr. Speed is measured
here, never by timed tests.

Everything that imports torch runs in a fresh worker process (``--worker NAME``), so each measurement starts from
the same state and memory peaks belong to one configuration. Every timed run also records how much CPU *other*
processes used meanwhile (`stylelens.bench.timing`, shared by all of them); in a full run, a run disturbed by more
than `CONTENDED_CPUS` is repeated (at most as many extra runs as planned ones), and results that still include
disturbed runs are marked. The benchmarks call the library (and whole `stylelens` processes), never `stylelens.cli`;
NVIDIA's code only ever runs in subprocesses inside its own checkout.
"""
