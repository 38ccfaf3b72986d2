"""Issue 20's int8 lever, measured on its own: Lite0's ONNX export quantized statically as the
set-up's int8 version is (scripts/quantize.py), timed against the float file and judged the way
a new version is judged before it may serve (top-1 agreement with the float model at least 99%,
accuracy not lower), here on more inputs than compare's labelled set.

  .venv/bin/python bench/int8.py          # after scripts/setup.sh; prints one line per figure

Inputs: the photos the repository holds (sample/ and sample/labelled/), each also mirrored, turned
15 degrees and cropped to three quarters: 68 inputs, 48 of them labelled. The calibration used
sample/'s 20 of them; no registry package here ships labelled food photos. The file is written to
target/int8/; the one the server may serve is models-int8/'s (README, "Versions").
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from quantize import photos, quantize, variants  # noqa: E402  the set-up's int8 export
from reference import preprocess_image  # noqa: E402  the reference pipeline, the same as the server's
FLOAT = ROOT / "checkpoints" / "efficientnet_lite0.onnx"
OUT = ROOT / "target" / "int8"


def inputs(manifest: dict) -> tuple[list[np.ndarray], list[str | None]]:
    """Every photo and three variants of it, with the label where sample/labelled gives one."""
    labels = json.loads((ROOT / "sample" / "labelled" / "labels.json").read_text())
    xs, ys = [], []
    for path in photos(ROOT / "sample") + photos(ROOT / "sample" / "labelled"):
        for variant in variants(Image.open(path)):
            xs.append(preprocess_image(variant, manifest)[None].copy())
            ys.append(labels.get(path.name) if path.parent.name == "labelled" else None)
    return xs, ys


def ms_per_pass(path: Path, x: np.ndarray, threads: int, seconds: float = 4.0) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(5):
        session.run(None, {name: x})
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        session.run(None, {name: x})
        n += 1
    return (time.perf_counter() - started) / n * 1e3


def main() -> None:
    manifest = json.loads((ROOT / "checkpoints" / "manifest.json").read_text())
    mapping = json.loads((ROOT / "class_mapping.json").read_text())
    food, names = list(mapping.values()), list(mapping.keys())
    xs, ys = inputs(manifest)
    OUT.mkdir(parents=True, exist_ok=True)
    float_session = ort.InferenceSession(str(FLOAT), providers=["CPUExecutionProvider"])
    name = float_session.get_inputs()[0].name

    quantized = OUT / "efficientnet_lite0_int8.onnx"
    quantize(FLOAT, quantized, manifest)
    int8_session = ort.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])

    # The served label is the likeliest of the food classes (class_mapping.json).
    def served(session, x):
        return names[int(np.argmax(session.run(None, {name: x})[0][0][food]))]

    agree = right_float = right_int8 = labelled = 0
    for i, (x, y) in enumerate(zip(xs, ys)):
        a, b = served(float_session, x), served(int8_session, x)
        agree += a == b
        if a != b:
            print(f"input {i} (label {y}): float says {a}, int8 {b}")
        if y is not None:
            labelled += 1
            right_float += a == y
            right_int8 += b == y
    print(f"int8 agreement with float (served label): {agree}/{len(xs)} = {agree / len(xs):.1%} (the rule: 99%)")
    print(f"accuracy on the labelled photos and variants: float {right_float}/{labelled}, int8 {right_int8}/{labelled}")
    print(f"file size: float {FLOAT.stat().st_size / 2**20:.1f} MB, int8 {quantized.stat().st_size / 2**20:.1f} MB")
    # Alternating rounds, so a VM's drift falls on both.
    for threads in (1, 2):
        f, q = [], []
        for _ in range(3):
            f.append(ms_per_pass(FLOAT, xs[0], threads))
            q.append(ms_per_pass(quantized, xs[0], threads))
        f, q = sorted(f)[1], sorted(q)[1]
        print(f"{threads} intra-op thread(s): float {f:.2f} ms, int8 {q:.2f} ms per pass (batch 1): {f / q:.2f}x")


if __name__ == "__main__":
    main()
