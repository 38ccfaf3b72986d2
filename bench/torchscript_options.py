"""Issue 20's TorchScript levers, measured on their own in libtorch (PyPI torch, the library the
server links): the exported file as the server runs it (already frozen by scripts/export_model.py),
the same module through `torch.jit.optimize_for_inference` (oneDNN convolutions, folded ops), and
a channels-last input. Batch 1, one intra-op thread (the server's layout under load) and every
core (a lone request's); variants alternate within each round.

  .venv/bin/python bench/torchscript_options.py
"""

import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
FILE = ROOT / "checkpoints" / "efficientnet_lite0.pt"


def ms_per_pass(module, x, seconds: float = 3.0) -> float:
    for _ in range(10):  # the profiling executor settles on a shape after a few calls
        module(x)
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        module(x)
        n += 1
    return (time.perf_counter() - started) / n * 1e3


def main() -> None:
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    plain = torch.jit.load(str(FILE)).eval()
    optimized = torch.jit.optimize_for_inference(torch.jit.load(str(FILE)).eval())
    variants = {
        "as exported (frozen)": (plain, x),
        "optimize_for_inference": (optimized, x),
        "channels-last input": (plain, x.contiguous(memory_format=torch.channels_last)),
    }
    with torch.no_grad():
        reference = plain(x)
        for name, (module, xi) in variants.items():
            for _ in range(10):  # the profiling executor settles on a shape after a few calls
                out = module(xi)
            print(f"{name}: largest logit difference from the exported file {(out - reference).abs().max().item():.1e}")
        print_interleaved(variants, "as exported (frozen)")


def print_interleaved(variants: dict, baseline: str) -> None:
    """Median ms per pass of each (module, input) over three rounds that alternate the variants, so
    a VM's drift falls on all of them; on one thread and on every core; ratios to `baseline`."""
    for threads in (1, os.cpu_count()):
        torch.set_num_threads(threads)
        times = {name: [] for name in variants}
        for _ in range(3):
            for name, (module, xi) in variants.items():
                times[name].append(ms_per_pass(module, xi))
        base = sorted(times[baseline])[1]
        for name, t in times.items():
            median = sorted(t)[1]
            print(f"{threads} thread(s), {name}: {median:.2f} ms per pass (batch 1, {base / median:.2f}x)")


if __name__ == "__main__":
    main()
