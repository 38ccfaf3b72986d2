"""The eager network into the server's formats, each checked against the eager model's answers on
the sample photos (with the manifest's preprocessing, scripts/reference.py's, the pipeline the
server's own is tested against) before anything is written."""

import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import UserError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from export_model import ChannelsLast, ONNX_OPSET  # noqa: E402  (the bundled model's own export)
from reference import preprocess  # noqa: E402

# The exported file answers as the eager model: every probability within this, the same top-1
# (float32 reassociation across layouts and runtimes stays orders of magnitude below it)...
MAX_PROBABILITY_DIFFERENCE = 1e-3
# ...or, where the logits are so large that softmax turns a rounding difference into another
# top-1 (a network with untrained batch norms reaches logits of 1,000), every logit within this
# fraction of the largest.
MAX_RELATIVE_LOGIT_DIFFERENCE = 1e-4
ALLOWLIST = ROOT / "src" / "runtime" / "torchscript_ops.txt"


class NoOnnx(UserError):
    """The exporter cannot write this network as ONNX (not: the ONNX file answers differently)."""


def photos() -> list[Path]:
    folder = ROOT / "sample"
    return sorted(p for p in [*folder.glob("*.jpg"), *folder.glob("*.png"), *(folder / "labelled").glob("*.jpg")])


def batch(spec: dict) -> torch.Tensor:
    return torch.from_numpy(np.stack([preprocess(p, spec) for p in photos()]))


def eager_logits(model: torch.nn.Module, images: torch.Tensor, state_dict: dict) -> torch.Tensor:
    with torch.no_grad():
        logits = model(images)
    if logits.ndim != 2:
        raise UserError(f"the model answers a tensor of shape {list(logits.shape)}, not [images, classes]")
    if not torch.isfinite(logits).all():
        bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        where = f": {len(bad)} tensors of the weights hold NaN or infinity (e.g. {bad[0]})" if bad else ""
        raise UserError(f"the model's outputs on the sample photos are not finite (NaN or infinity){where}; "
                        "the training diverged: import an earlier checkpoint")
    return logits


def compare(what: str, got: np.ndarray, expected: torch.Tensor) -> float:
    got = torch.from_numpy(np.asarray(got, dtype=np.float32))
    worst = float((got.softmax(-1) - expected.softmax(-1)).abs().max())
    same = worst <= MAX_PROBABILITY_DIFFERENCE and torch.equal(got.argmax(-1), expected.argmax(-1))
    relative = float((got - expected).abs().max() / expected.abs().max().clamp(min=1.0))
    if not same and relative > MAX_RELATIVE_LOGIT_DIFFERENCE:
        raise UserError(f"the {what} export answers differently from the eager model (probabilities up to "
                        f"{worst:.2e} apart on the sample photos): nothing written; please report the architecture")
    return worst


def torchscript(model: torch.nn.Module, images: torch.Tensor, expected: torch.Tensor) -> tuple[bytes, dict]:
    """Traced and frozen, in the layout that runs faster here (channels-last for convolutions, as
    the bundled model is; plain for a transformer), checked after a save and reload."""
    example = images[:1]
    candidates = {}
    for layout, wrapped in (("channels-last", ChannelsLast(model)), ("plain", model)):
        with torch.no_grad(), _quiet():
            try:
                frozen = torch.jit.freeze(torch.jit.trace(wrapped.eval(), example))
            except Exception as e:
                raise UserError(f"the network cannot be traced to TorchScript ({str(e).splitlines()[0][:160]})") from None
            for _ in range(3):  # the first passes profile and optimise the graph
                frozen(example)
            started = time.perf_counter()
            for _ in range(5):
                frozen(example)
        candidates[layout] = (time.perf_counter() - started, frozen)
    layout = min(candidates, key=lambda k: candidates[k][0])
    frozen = candidates[layout][1]
    buffer = io.BytesIO()
    torch.jit.save(frozen, buffer)
    data = buffer.getvalue()
    reloaded = torch.jit.load(io.BytesIO(data))
    check_operators(reloaded)
    with torch.no_grad():
        worst = compare("TorchScript", reloaded(images).numpy(), expected)
    ratio = candidates["plain"][0] / candidates["channels-last"][0]
    return data, {"layout": layout, "channels-last speed-up": f"{ratio:.2f}x", "max difference": worst}


def check_operators(module) -> None:
    """The server refuses a TorchScript file whose code uses an operator off its allowlist
    (src/runtime/torchscript_ops.rs): the same check here, so that a refusal comes before writing."""
    used = set()

    def walk(block):
        for node in block.nodes():
            used.add(node.kind())
            for inner in node.blocks():
                walk(inner)

    for name in module._c._method_names():
        walk(module._c._get_method(name).graph)
    refused = off_allowlist(used)
    if refused:
        raise UserError(f"the exported network uses operators the server does not run ({', '.join(refused[:6])}); "
                        "scripts/torchscript_ops.py adds an architecture's operators to src/runtime/torchscript_ops.txt")


def off_allowlist(operators) -> list[str]:
    """The operators the server refuses: what src/runtime/torchscript_ops.rs's `refused` computes."""
    allowed = {line.strip() for line in ALLOWLIST.read_text().splitlines() if line.strip() and not line.startswith("#")}
    return sorted(op for op in set(operators) if not op.startswith("prim::") and op not in allowed)


def onnx(model: torch.nn.Module, images: torch.Tensor, expected: torch.Tensor) -> tuple[bytes, dict]:
    import onnxruntime

    buffer = io.BytesIO()
    # torch's fused attention fast path (torchvision's ViT in eval mode) has no ONNX export; the
    # plain path computes the same.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad(), _quiet():
        try:
            torch.onnx.export(model, (images[:1],), buffer, dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as e:
            raise NoOnnx(f"the network does not export to ONNX ({str(e).splitlines()[0][:160]})") from None
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
    data = buffer.getvalue()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    worst = compare("ONNX", session.run(["logits"], {"image": images.numpy()})[0], expected)
    return data, {"max difference": worst}


def _quiet():
    import contextlib
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def server_binary() -> Path | None:
    for candidate in (os.environ.get("FOOD_API_BIN"), ROOT / "target/release/food-api", ROOT / "target/debug/food-api"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def given_torchscript(path: Path, images: torch.Tensor, trust: bool) -> tuple[bytes, dict, int]:
    """A TorchScript file as it is: its operators checked by the server's own walk (which runs none
    of its code) before Python loads it, since loading runs its __setstate__."""
    import subprocess

    binary = server_binary()
    if binary is not None:
        out = subprocess.run([str(binary), "torchscript-ops", str(path)], capture_output=True, text=True)
        if out.returncode != 0:
            reason = (out.stderr.strip().splitlines() or ["the server binary failed"])[-1]
            raise UserError(f"{path} is not a loadable TorchScript file: {reason}")
        refused = off_allowlist(out.stdout.split())
        if refused:
            raise UserError(f"{path} uses operators an image classifier never needs ({', '.join(refused[:6])}): refused")
    elif not trust:
        raise UserError(f"{path} is TorchScript, a program: its operators are checked by the server binary, "
                        "which is not built (cargo build --release, or set FOOD_API_BIN); or pass --trust-pickle")
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        logits = module(images)
    return path.read_bytes(), {"layout": "as given"}, _outputs(logits)


def given_onnx(path: Path, images: torch.Tensor) -> tuple[bytes, dict, int]:
    import onnx as onnx_lib
    import onnxruntime
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        proto = onnx_lib.load(str(path), load_external_data=False)
    except Exception as e:
        raise UserError(f"{path} is not an ONNX model ({str(e).splitlines()[0][:120]})") from None
    if any(uses_external_data(t) for t in _get_all_tensors(proto)):
        raise UserError(f"{path} keeps tensors in other files (external data), which the server refuses: "
                        "save it with save_as_external_data=False")
    data = path.read_bytes()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = torch.from_numpy(session.run(None, {name: images.numpy()})[0])
    return data, {"layout": "as given"}, _outputs(logits)


def _outputs(logits: torch.Tensor) -> int:
    if logits.ndim != 2:
        raise UserError(f"the model answers a tensor of shape {list(logits.shape)}, not [images, classes]")
    if not torch.isfinite(logits).all():
        raise UserError("the model's outputs on the sample photos are not finite (NaN or infinity)")
    return int(logits.shape[1])
