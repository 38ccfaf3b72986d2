"""Imports a team's own PyTorch classifier as a version the server serves.

  .venv/bin/python scripts/import_model.py best_model.pth --classes class_mapping.json
  .venv/bin/python scripts/import_model.py best_model.pth --classes classes.json --bundle food.tar.gz
  .venv/bin/python scripts/import_model.py best_model.pth --classes class_mapping.json \\
      --drop-in checkpoints --drop-in-mapping class_mapping.json     # what update_model.sh does

WEIGHTS: a state dict (also with DataParallel's `module.` prefix), a training checkpoint dict
(model_state_dict / state_dict / model / net; Lightning's `model.` prefix), a .safetensors file, a
TorchScript or an ONNX file. A whole pickled model (torch.save(model)) runs code when loaded: it is
refused unless --trust-pickle. The network is found from the weights' names and shapes among
torchvision's classifiers, timm's main families and EfficientNet-Lite (--arch to name it), the
number of classes from its head. The class mapping may be {"pizza": 0}, ["pizza", ...] or
{"0": "pizza"}.

Preprocessing goes into the manifest: torchvision's ImageNet recipe (resize 256 bilinear, centre
224, ImageNet mean/std), timm's own pretrained_cfg for a timm network; --input-size, --resize,
--interpolation, --mean and --std override. The network is exported to TorchScript (traced, frozen,
channels-last where that is faster here) and to ONNX, and each export must answer as the eager
model on the sample photos before anything is written. Nothing is written when a check fails.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from model_import import UserError  # noqa: E402


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path)
    parser.add_argument("--classes", type=Path, required=True, help="the class mapping (JSON)")
    parser.add_argument("--arch", help="torchvision:NAME, timm:NAME or lite:efficientnet-liteN (found when left out)")
    parser.add_argument("--name", default="food", help="the model's name on the server (default food)")
    parser.add_argument("--version", help="the version's name (default: the architecture and a hash of the import)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--repository", type=Path, help="write into this model repository (default models)")
    out.add_argument("--bundle", type=Path, help="write a .tar.gz bundle for POST /models/{name}/versions")
    out.add_argument("--drop-in", type=Path, help="write into the drop-in folder (checkpoints) for POST /reload_model")
    parser.add_argument("--drop-in-mapping", type=Path, default=Path("class_mapping.json"),
                        help="with --drop-in: the server's --class-mapping file (default class_mapping.json)")
    parser.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript",
                        help="the runtime the version names (both are checked; onnx for the build without libtorch)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load a whole pickled model or an unchecked TorchScript file (runs code from the file)")
    parser.add_argument("--max-mb", type=int, default=2048, help="refuse weights files larger than this (default 2048)")
    parser.add_argument("--text-encoder", type=Path, default=ROOT / "checkpoints",
                        help="the folder whose text encoder the version carries (default checkpoints)")
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--resize", type=int, help="the shorter side before the centre crop")
    parser.add_argument("--interpolation", choices=["bilinear", "bicubic"])
    parser.add_argument("--mean", type=float, nargs=3)
    parser.add_argument("--std", type=float, nargs=3)
    return parser.parse_args()


def resolve_arch(given: str) -> str:
    from model_import import architectures

    if ":" in given:
        return given
    known = architectures.all_architectures()
    for source in ("torchvision", "timm", "lite"):
        if f"{source}:{given}" in known:
            return f"{source}:{given}"
    raise UserError(f"--arch {given}: no such architecture in torchvision, timm's families or EfficientNet-Lite "
                    "(names look like resnet50, timm:efficientnet_b0, lite:efficientnet-lite0)")


def main() -> None:
    args = arguments()
    import torch

    from model_import import architectures, checkpoint, classes, export, write

    torch.manual_seed(0)
    weights = checkpoint.read(args.weights, args.max_mb, args.trust_pickle)
    mapping = classes.read(args.classes)
    report = {"weights": f"{args.weights} ({weights.how})"}

    if weights.kind == "state_dict":
        if args.arch:
            arch = resolve_arch(args.arch)
            num_classes, also = architectures.check_fit(arch, weights.state_dict), []
        else:
            match = architectures.detect(weights.state_dict)
            arch, num_classes, also = match.arch, match.num_classes, match.also
        classes.check_against_head(mapping, num_classes, str(args.classes))
        model = architectures.build(arch, num_classes)
        try:
            model.load_state_dict(weights.state_dict, strict=False)
        except RuntimeError as e:
            raise UserError(f"the weights do not load into {arch}: {str(e).splitlines()[0]}") from None
        model.eval()
        spec = architectures.preprocessing(arch, model) | overrides(args)
        images = export.batch(spec)
        expected = export.eager_logits(model, images, weights.state_dict)
        exported = {"torchscript": export.torchscript(model, images, expected)}
        try:
            exported["onnx"] = export.onnx(model, images, expected)
        except export.NoOnnx as e:
            if args.format == "onnx":
                raise
            print(f"import_model: note: {e}; the version is TorchScript only", file=sys.stderr)
        data, details = exported[args.format]
        report["architecture"] = arch + (f" (also fits {', '.join(also[:3])}: --arch to choose)" if also else "")
        report["checks"] = {fmt: info for fmt, (_, info) in exported.items()}
        stem = arch.split(":", 1)[1]
    else:
        spec = architectures.TORCHVISION_RECIPE | overrides(args)
        images = export.batch(spec)
        if weights.kind == "torchscript":
            data, details, num_classes = export.given_torchscript(args.weights, images, args.trust_pickle)
            args.format = "torchscript"
        else:
            data, details, num_classes = export.given_onnx(args.weights, images)
            args.format = "onnx"
        classes.check_against_head(mapping, num_classes, str(args.classes))
        report["architecture"] = f"{weights.kind} file as given ({num_classes} outputs)"
        report["checks"] = {args.format: details}
        stem = args.weights.stem

    # The version names the weights, the mapping, the preprocessing and the format: an import that
    # changes any of them is another version, never a changed immutable one.
    weights_sha = hashlib.sha256(args.weights.read_bytes())
    digest = weights_sha.copy()
    digest.update(json.dumps([mapping, spec, args.format], sort_keys=True).encode())
    tag = f"{safe(stem)}-{digest.hexdigest()[:8]}"
    version = args.version or tag + ("-onnx" if args.format == "onnx" else "")
    suffix = ".pt" if args.format == "torchscript" else ".onnx"
    text, text_files = write.text_encoder(args.text_encoder, args.format)
    manifest = {"name": args.name, "version": version, "format": args.format,
                "weights": f"{tag}{suffix}", "num_outputs": num_classes, **spec,
                "source": f"{args.weights.name} (sha256 {weights_sha.hexdigest()[:16]}), "
                          f"imported as {report['architecture'].split(' ')[0]} by scripts/import_model.py",
                "text_encoder": text}
    if manifest["interpolation"] == "bilinear":
        del manifest["interpolation"]  # the server's default: the manifest reads as older ones do
    files = write.contents(manifest, data, mapping, text_files)

    if args.bundle:
        where = write.to_bundle(args.bundle, files)
    elif args.drop_in:
        removed = write.to_drop_in(args.drop_in, args.drop_in_mapping, files)
        where = f"{args.drop_in} and {args.drop_in_mapping}" + (f" (removed {', '.join(removed)})" if removed else "")
    else:
        where = write.to_repository(args.repository or ROOT / "models", args.name, version, files)
    print_report(args, version, report, mapping, spec, where)


def overrides(args) -> dict:
    given = {"input_size": args.input_size, "resize_shorter_side": args.resize, "interpolation": args.interpolation,
             "mean": args.mean, "std": args.std}
    spec = {k: v for k, v in given.items() if v is not None}
    if args.input_size and not args.resize:
        spec["resize_shorter_side"] = int(args.input_size / 0.875)
    return spec


def safe(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip("-.")
    return cleaned[:40] or "model"


def export_photos():
    from model_import import export

    return export.photos()


def print_report(args, version, report, mapping, spec, where) -> None:
    names = sorted(mapping, key=mapping.get)
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    print(f"imported {args.name} version {version}")
    print(f"  weights:       {report['weights']}")
    print(f"  architecture:  {report['architecture']}")
    print(f"  classes:       {len(names)} ({shown})")
    print(f"  preprocessing: resize {spec['resize_shorter_side']} {spec.get('interpolation', 'bilinear')}, "
          f"centre {spec['input_size']}, mean {spec['mean']}, std {spec['std']}")
    for fmt, info in report["checks"].items():
        detail = ", ".join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
        what = "runs" if info.get("layout") == "as given" else "answers as the eager model"
        print(f"  check {fmt}: {what} on the {len(export_photos())} sample photos ({detail})")
    print(f"  written:       {where} (format {args.format})")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        print(f"import_model: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a folder that cannot be written, a disk that is full: said, not a traceback
        print(f"import_model: {e.filename or ''}: {e.strerror or e}; nothing written", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("import_model: interrupted; nothing written", file=sys.stderr)
        sys.exit(130)
