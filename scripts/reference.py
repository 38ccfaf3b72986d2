"""The reference pipeline (PIL + the exported TorchScript), to check the Rust server against.

  python scripts/reference.py sample/*.jpg sample/*.png          # top-3 food answers per photo
  python scripts/reference.py --fixture tests/fixtures/preprocess_reference.json sample/coffee.png
  python scripts/reference.py --fixture tests/fixtures/preprocess_reference_bicubic.json \
      --spec '{"interpolation": "bicubic", "resize_shorter_side": 248, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}' sample/orange.jpg

The fixture holds, for one photo, the normalised tensor's per-channel means and a grid of pixel
values; the Rust unit tests compare their own preprocessing with it.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image


RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def preprocess(path: Path, manifest: dict) -> np.ndarray:
    """decode -> RGB -> shorter side to `resize` (the manifest's filter, bilinear by default) -> centre crop -> (x/255 - mean) / std."""
    return preprocess_image(Image.open(path), manifest)


def preprocess_image(img: Image.Image, manifest: dict) -> np.ndarray:
    """`preprocess` on an image already opened (bench/int8.py feeds it transformed variants)."""
    img = img.convert("RGB")
    w, h = img.size
    short = manifest["resize_shorter_side"]
    if w <= h:
        size = (short, int(short * h / w))
    else:
        size = (int(short * w / h), short)
    img = img.resize(size, RESAMPLE[manifest.get("interpolation", "bilinear")])
    crop = manifest["input_size"]
    left = int(round((size[0] - crop) / 2.0))
    top = int(round((size[1] - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array(manifest["mean"], dtype=np.float32)) / np.array(manifest["std"], dtype=np.float32)
    return x.transpose(2, 0, 1)  # HWC -> CHW


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model-dir", default="checkpoints", type=Path)
    parser.add_argument("--class-mapping", default="class_mapping.json", type=Path)
    parser.add_argument("--fixture", type=Path, help="write the preprocessing fixture of the first image")
    parser.add_argument("--spec", type=json.loads, default={},
                        help='preprocessing fields over the manifest\'s, e.g. \'{"interpolation": "bicubic"}\'')
    args = parser.parse_args()
    manifest = json.loads((args.model_dir / "manifest.json").read_text()) | args.spec
    mapping = json.loads(args.class_mapping.read_text())
    model = torch.jit.load(str(args.model_dir / manifest["weights"]))

    if args.fixture:
        x = preprocess(args.images[0], manifest)
        step = 16
        fixture = {
            "image": str(args.images[0]),
            "shape": list(x.shape),
            "channel_means": [float(c.mean()) for c in x],
            "grid_step": step,
            "grid": x[:, ::step, ::step].round(6).tolist(),
        }
        args.fixture.write_text(json.dumps(fixture) + "\n")
        print(f"wrote {args.fixture}")
        return

    for path in args.images:
        x = torch.from_numpy(preprocess(path, manifest)).unsqueeze(0)
        with torch.no_grad():
            probs = model(x).softmax(-1)[0]
        food = sorted(((float(probs[i]), label) for label, i in mapping.items()), reverse=True)
        mass = sum(p for p, _ in food)
        top = ", ".join(f"{label} {p:.3f}" for p, label in food[:3])
        print(f"{path.name}: {top} (food mass {mass:.3f})")


if __name__ == "__main__":
    main()
