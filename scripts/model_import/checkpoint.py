"""What a team's weights file is, read without running any of its code.

torch.save writes a zip whose data.pkl is a pickle: unpickling a whole model (`torch.save(model)`)
imports and runs whatever the pickle names, so everything is read with `weights_only=True`, which
refuses any class but tensors and plain containers; a whole pickled model is refused unless the
user says they trust it (`--trust-pickle`). A TorchScript file is a zip with code/ in it, an ONNX
file a protobuf: both are returned as files for their own checks (export.py).
"""

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from . import UserError

# Where training code keeps the weights inside a checkpoint dict, most common first: plain
# PyTorch's tutorials (model_state_dict), Lightning and timm's train.py (state_dict), others.
STATE_DICT_KEYS = ("model_state_dict", "state_dict", "model", "net", "state_dict_ema", "model_ema", "ema")
# Prefixes a wrapper leaves on every key: DataParallel/DDP (module.), torch.compile (_orig_mod.),
# a LightningModule holding the network as self.model / self.net / self.backbone.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "backbone.", "network.", "classifier_model.")


@dataclass
class Weights:
    """A file read: `state_dict` for weights, else `module` (a trusted pickle) or `path` (kind
    "torchscript" or "onnx"); `how` says what was unwrapped, for the report."""

    kind: str
    how: str
    state_dict: dict | None = None
    module: torch.nn.Module | None = None
    path: Path | None = None


def read(path: Path, max_mb: int, trust_pickle: bool) -> Weights:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    size_mb = path.stat().st_size / 2**20
    if size_mb > max_mb:
        raise UserError(f"{path} is {size_mb:.0f} MB, more than --max-mb {max_mb}: raise --max-mb if this is your model")
    with path.open("rb") as f:
        head = f.read(64)
    if not head:
        raise UserError(f"{path} is empty")
    if path.suffix == ".onnx":
        return Weights("onnx", "an ONNX file", path=path)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head):
        return Weights("state_dict", "a safetensors file", state_dict=_read_safetensors(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in n or n.startswith("code/") for n in names) and any(n.endswith("constants.pkl") for n in names):
            return Weights("torchscript", "a TorchScript file", path=path)
    elif _looks_like_text(head):  # not a zip, nor torch.save's pre-1.6 pickle (which torch.load reads)
        start = head.decode("utf-8", "replace").strip().splitlines()[0][:40]
        hint = " (an HTML page: did the download get a login or error page?)" if "<" in start else ""
        raise UserError(f"{path} is text, not a PyTorch checkpoint: it starts with {start!r}{hint}")
    return _read_torch(path, trust_pickle)


def _read_torch(path: Path, trust_pickle: bool) -> Weights:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as e:
        # weights_only refused a class: a whole pickled model, or a checkpoint holding objects.
        names = _globals_named(str(e))
        if not trust_pickle:
            raise UserError(
                f"{path} is a pickled Python object ({names}), not plain weights: loading it runs code "
                "from the file, so it is refused. Save model.state_dict() instead, or pass --trust-pickle "
                "if you made this file yourself") from None
        return _read_trusted_pickle(path)
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = (str(e).splitlines()[0].split(". ")[0] if str(e) else type(e).__name__).rstrip(".")
        if "central directory" in reason or "zip archive" in reason or isinstance(e, EOFError):
            raise UserError(f"{path} is truncated or damaged ({reason}): copy or download it again") from None
        raise UserError(f"{path} is not a PyTorch checkpoint torch.load reads: {reason}") from None
    return _unwrap(path, loaded)


def _read_trusted_pickle(path: Path) -> Weights:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as e:
        raise UserError(f"{path} is a pickled model whose class cannot be imported here ({e}): "
                        "save model.state_dict() where you trained it and import that") from None
    if isinstance(loaded, torch.nn.Module):
        return Weights("state_dict", f"a whole pickled model ({type(loaded).__name__}), trusted",
                       state_dict=loaded.state_dict(), module=loaded)
    return _unwrap(path, loaded)


def _unwrap(path: Path, loaded) -> Weights:
    how = "a state dict"
    if isinstance(loaded, dict) and not _is_state_dict(loaded):
        for key in STATE_DICT_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, torch.nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, dict) and _is_state_dict(inner):
                loaded, how = inner, f"a training checkpoint (its {key!r})"
                break
        else:
            keys = ", ".join(repr(k) for k in list(loaded)[:8])
            raise UserError(f"{path} is a dict without weights in any of {', '.join(STATE_DICT_KEYS)} "
                            f"(its keys: {keys}): save model.state_dict()")
    if not isinstance(loaded, dict) or not _is_state_dict(loaded):
        raise UserError(f"{path} holds a {type(loaded).__name__}, not a model's weights: save model.state_dict()")
    state_dict, stripped = strip_prefixes(loaded)
    if stripped:
        how += f" (prefix {stripped!r} removed)"
    return Weights("state_dict", how, state_dict=state_dict)


def strip_prefixes(state_dict: dict) -> tuple[dict, str]:
    """Removes, one after another, each wrapper prefix that every key carries."""
    stripped = ""
    while True:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state_dict)), None)
        if prefix is None:
            return state_dict, stripped
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
        stripped += prefix


def _is_state_dict(value: dict) -> bool:
    return bool(value) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _looks_like_safetensors(head: bytes) -> bool:
    # 8 bytes of little-endian header length, then the header's JSON.
    return len(head) > 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return strip_prefixes(load_file(str(path), device="cpu"))[0]
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable safetensors file ({e}): copy or download it again") from None


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 0x20 or b in b"\t\r\n" for b in head)


def _globals_named(message: str) -> str:
    """The classes a weights_only refusal names, e.g. 'torchvision.models.resnet.ResNet'."""
    import re

    found = re.findall(r"GLOBAL ([\w.]+)", message) or re.findall(r"global ([\w.]+)", message)
    return ", ".join(dict.fromkeys(found)) or "classes weights_only does not allow"
