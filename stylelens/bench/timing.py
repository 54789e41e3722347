"""The benchmarks' shared measuring kit: timed repeats with a record of what else ran, memory, workers, machine.

Every timed run also records how much CPU *other* processes used meanwhile (from /proc/stat); in a full run, a run
disturbed by more than `CONTENDED_CPUS` is repeated (at most as many extra runs as planned ones), and results that
still include disturbed runs are marked. Nothing here imports torch, so the driver process stays lean.
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

# A timed run during which other processes used at least this many CPUs (on average) counts as disturbed.
CONTENDED_CPUS = 0.25


def log(message: str) -> None:
    """Progress line on stderr, so stdout stays free for results."""
    print(f'[bench {time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence, as a plain float for JSON."""
    return float(statistics.median(values))


def seconds(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call of `fn`, for measurements that interleave their own runs."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def load_average() -> list[float] | None:
    """The 1/5/15-minute load average rounded to 2 decimals, or None where unknown, to say how quiet a run was."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None


# --- Timing with a record of what else ran ------------------------------------------------------------------------

def busy_cpu_seconds() -> float | None:
    """CPU-seconds all CPUs have spent busy since boot (Linux /proc/stat), or None where unknown."""
    try:
        with open('/proc/stat') as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return (sum(ticks) - idle) / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError):
        return None


def self_cpu_seconds() -> float:
    """User + system CPU time of this process, the own share of in-process measurements."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's finished children, the own share of command measurements."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Runs:
    """Timed runs of one measurement: kept ones, and disturbed ones that were repeated (dropped)."""

    seconds: list[float] = field(default_factory=list)
    others: list[float | None] = field(default_factory=list)  # CPUs other processes used during each kept run
    dropped_seconds: list[float] = field(default_factory=list)
    dropped_others: list[float | None] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median seconds of the kept runs."""
        return median(self.seconds)

    @property
    def disturbed(self) -> int:
        """How many kept runs were disturbed by other processes."""
        return sum(1 for o in self.others if o is not None and o >= CONTENDED_CPUS)


def repeat(fn: Callable[[], float | None], runs: int, retry: bool,
           own_cpu: Callable[[], float] = self_cpu_seconds) -> Runs:
    """Time `fn` `runs` times (wall clock, or the seconds `fn` returns), noting other processes' CPU use meanwhile.

    `own_cpu` is the CPU time that belongs to the measured work (this process, or its children for commands). With
    `retry`, disturbed runs are dropped and repeated, at most `runs` times in all.
    """
    result = Runs()
    while len(result.seconds) < runs:
        busy0, own0, start = busy_cpu_seconds(), own_cpu(), time.perf_counter()
        reported = fn()
        wall = time.perf_counter() - start
        busy1, own1 = busy_cpu_seconds(), own_cpu()
        others = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0 - (own1 - own0)) / wall)
        took = wall if reported is None else reported
        if retry and others is not None and others >= CONTENDED_CPUS and len(result.dropped_seconds) < runs:
            result.dropped_seconds.append(took)
            result.dropped_others.append(others)
            continue
        result.seconds.append(took)
        result.others.append(others)
    return result


def alternate(fns: dict[str, Callable[[], float | None]], runs: int, retry: bool,
              own_cpu: Callable[[], float] = children_cpu_seconds) -> dict[str, Runs]:
    """Time every `fns` entry `runs` times in rounds (a, b, c, a, b, c, ...), so that drifts of the machine (heat,
    other work, page cache) fall on all of them alike; a disturbed run is repeated at once where `retry`."""
    results = {name: Runs() for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            one, kept = repeat(fn, 1, retry, own_cpu), results[name]
            kept.seconds += one.seconds
            kept.others += one.others
            kept.dropped_seconds += one.dropped_seconds
            kept.dropped_others += one.dropped_others
    return results


def discard(fn: Callable[[], Any]) -> Callable[[], None]:
    """`fn` with its result dropped, for `repeat` (which reads a returned float as the time to record)."""
    def call() -> None:
        fn()
    return call


def runs_dict(runs: Runs) -> dict[str, Any]:
    """A `Runs` as JSON-ready numbers, with its median and disturbed count."""
    return dict(asdict(runs), median_seconds=runs.median, disturbed=runs.disturbed)


# --- Memory and runtime settings of the measuring process ---------------------------------------------------------

def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """Peak resident set size (`ru_maxrss`) in MiB: kilobytes on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == 'darwin' else peak / 2 ** 10


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: write 5 to /proc/self/clear_refs), so that `ru_maxrss`
    afterwards is the peak of what follows. False where that is not possible (the peak then includes loading)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def apply_runtime_tuning(device: Any) -> bool:
    """Call `stylelens.devices.tune_cpu_allocator()` where it exists and the device is the CPU, so in-process numbers
    see the same allocator settings as `stylelens generate` (a hook for that tuning; False where it is absent)."""
    from stylelens import devices

    tune = getattr(devices, 'tune_cpu_allocator', None)
    if tune is None or getattr(device, 'type', str(device)) != 'cpu':
        return False
    tune()
    return True


# --- Processes ----------------------------------------------------------------------------------------------------

def run_command(cmd: Sequence[str], cwd: str | os.PathLike | None = None) -> None:
    """Run a command that must succeed (in `cwd` if given), discarding its output."""
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}')


# Runs argv[1:] and prints its peak RSS (KiB). A child's ru_maxrss also counts the memory of the process it was
# spawned from (Linux keeps the larger of the two at exec), so commands are spawned from this small interpreter.
_PEAK_SNIPPET = ('import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, '
                 'stderr=subprocess.PIPE, text=True); sys.stderr.write(p.stderr[-3000:]); '
                 'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)')


def command_peak_rss_kib(cmd: Sequence[str]) -> int:
    """Peak RSS (KiB) of a command that must succeed, measured apart from the (possibly large) calling process."""
    proc = subprocess.run([sys.executable, '-c', _PEAK_SNIPPET, *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}')
    return int(proc.stdout.strip().splitlines()[-1])


def run_worker(name: str, network: Path | None = None, **options: Any) -> dict[str, Any]:
    """Run one `python -m stylelens.bench --worker NAME` in a fresh interpreter and return the JSON it prints on its
    last stdout line, so each measurement starts from the same state and owns its memory peak."""
    cmd = [sys.executable, '-m', 'stylelens.bench', '--worker', name]
    if network is not None:
        cmd += ['--network', str(network)]
    for key, value in options.items():
        flag = f'--{key.replace("_", "-")}'
        if isinstance(value, bool):
            cmd += [flag] if value else []
        else:
            cmd += [flag, str(value)]
    return run_json(cmd, f'benchmark worker {name}')


def run_output(cmd: Sequence[str], what: str, cwd: str | os.PathLike | None = None) -> str:
    """The stdout of a command that must succeed (in `cwd` if given); a failure raises naming `what`, with the end
    of its stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f'{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}')
    return proc.stdout


def run_json(cmd: Sequence[str], what: str, cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """The JSON a command that must succeed prints on its last stdout line (see `run_output`)."""
    return json.loads(run_output(cmd, what, cwd).strip().splitlines()[-1])


# CPU flags that decide which paths can be fast: vector FMA width, bf16 dot products, bf16/fp16 matrix units.
CPU_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_tile', 'amx_bf16',
             'amx_fp16')


def cpu_description() -> tuple[str, list[str]]:
    """The CPU model name and which of `CPU_FLAGS` it has (Linux /proc/cpuinfo; the platform string elsewhere)."""
    fields: dict[str, str] = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get('flags', '').split())
    model = fields.get('model name') or platform.processor() or platform.machine()
    return model, [flag for flag in CPU_FLAGS if flag in flags]


def matrix_units(flags: Sequence[str]) -> str:
    """What the CPU offers for bf16 in words: matrix units (AMX), vector dot products (AVX512-BF16), or nothing."""
    if 'amx_bf16' in flags:
        return 'bf16 matrix units (AMX)'
    if 'avx512_bf16' in flags:
        return 'bf16 vector dot products (AVX512-BF16), no matrix units'
    return 'no bf16 instructions (bf16 is converted to fp32 for the arithmetic)'


def machine_info() -> dict[str, Any]:
    """CPU model and flags, cores, torch build and threads, versions, date and load, for bench.json (torch is asked
    in a fresh interpreter so this process never imports it)."""
    cpu_model, flags = cpu_description()
    probe = ('import json, torch; print(json.dumps(dict(version=torch.__version__, threads=torch.get_num_threads(), '
             'interop_threads=torch.get_num_interop_threads(), mkldnn=torch.backends.mkldnn.is_available(), '
             'cpu_capability=torch.backends.cpu.get_cpu_capability(), '
             'mkldnn_bf16=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), '
             'mkldnn_fp16=bool(torch.ops.mkldnn._is_mkldnn_fp16_supported()))))')
    torch_info = json.loads(subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                                           check=True).stdout)
    spec = importlib.util.find_spec('stylelens')
    return dict(
        cpu_model=cpu_model, cpu_flags=flags, bf16_units=matrix_units(flags), logical_cpus=os.cpu_count(),
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
        torch=torch_info, python=platform.python_version(), platform=platform.platform(),
        stylelens_path=str(Path(spec.origin).parent) if spec and spec.origin else None,
        date_utc=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        load_average=load_average(),
    )
