"""Lite0's ONNX export quantized to int8 (ONNX Runtime's static quantization), for the int8 version
scripts/export_model.py writes with --int8-repository, and for bench/int8.py, which measures it.

Choices, each measured in BENCHMARKS.md ("Levers"), on the repository's photos and their variants:
- QDQ format, per-channel int8 weights, uint8 activations, min/max calibration. Percentile and
  entropy calibration gave the same answers; uint8 weights (which no x86 kernel saturates) ran
  ten times slower.
- `reduce_range`: 7-bit weights. On x86 CPUs without VNNI, ONNX Runtime's int8 kernel adds pairs
  of u8 x s8 products in 16 bits, which saturates with 8-bit weights: the same file then gives
  other answers than on a VNNI CPU (most likely why an earlier VM agreed with the float model on
  only 53 of 68 inputs). With 7 bits nothing saturates, so the answers do not depend on the CPU.
- The stem convolution and the classifier stay float: 67/68 agreement instead of 66/68 with the
  earlier calibration on all 68 inputs, at the same speed within noise.
Calibration uses the photos in sample/ (not sample/labelled/, which compare judges with), each
also mirrored, turned 15 degrees and cropped to three quarters: 20 inputs.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from reference import preprocess_image  # the reference pipeline, the same as the server's

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = ROOT / "sample"


def variants(img: Image.Image) -> list[Image.Image]:
    """The photo, mirrored, turned 15 degrees, and its top-left three quarters."""
    crop = img.crop((0, 0, img.width * 3 // 4, img.height * 3 // 4))
    return [img, ImageOps.mirror(img), img.rotate(15), crop]


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))


def calibration_inputs(manifest: dict) -> list[np.ndarray]:
    return [preprocess_image(v, manifest)[None].copy()
            for path in photos(CALIBRATION) for v in variants(Image.open(path))]


def quantize(float_onnx: Path, out: Path, manifest: dict) -> None:
    """Writes `float_onnx` quantized to `out` (through a temporary file renamed into place)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = calibration_inputs(manifest)

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.it = iter(inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"image": x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_onnx), str(pre))  # shape inference and graph clean-up first
        nodes = onnx.load(str(pre)).graph.node
        convs = [n.name for n in nodes if n.op_type == "Conv"]
        float_kept = [convs[0]] + [n.name for n in nodes if n.op_type == "Gemm"]
        partial = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        quantize_static(str(pre), str(partial), Calibration(), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=float_kept)
    os.replace(partial, out)
