"""The manifest's `jpeg_dct_scaling` on the release server, judged as the versions issue asks: the
bundled Lite0 and a copy of it with the option on (a new manifest: a new version), compared on the
labelled photos enlarged to phone size, and a lone request's preprocessing and total time on a
12 MP photo for each. Starts and stops the server itself, with its own repository (hard links to
models/) and compare set.

  cargo build --release && .venv/bin/python bench/jpeg_scaling.py

Exit code 1 if the scaled version disagrees with the full one on any photo, or is less accurate.
"""

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import multipart  # noqa: E402
from versions import BOUNDARY_TYPE, call, start_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def enlarged(path: Path, longer: int) -> bytes:
    """The photo with its longer side at `longer` pixels, as a camera's quality-90 JPEG."""
    image = Image.open(path).convert("RGB")
    scale = longer / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--longer-side", type=int, default=4000, help="the enlarged photos' longer side")
    parser.add_argument("--requests", type=int, default=20, help="lone requests per version for the timings")
    args = parser.parse_args()

    lite0 = next(f for f in sorted((ROOT / "models/food").iterdir()) if f.name.startswith("lite0-"))
    scaled = f"{lite0.name}-dct"
    work = Path(tempfile.mkdtemp(prefix="jpeg-scaling-bench-"))
    for version in (lite0.name, scaled):
        folder = work / "models/food" / version
        folder.mkdir(parents=True)
        for file in lite0.iterdir():
            if file.name != "manifest.json":
                os.link(file, folder / file.name)
        manifest = json.loads((lite0 / "manifest.json").read_text())
        if version == scaled:
            manifest.update(version=scaled, jpeg_dct_scaling=True)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    labels = json.loads((ROOT / "sample/labelled/labels.json").read_text())
    photos = work / "sets/phone"
    photos.mkdir(parents=True)
    for name in labels:
        (photos / name).write_bytes(enlarged(ROOT / "sample/labelled" / name, args.longer_side))
    (photos / "labels.json").write_text(json.dumps(labels))
    sizes = [(photos / n).stat().st_size for n in labels]
    print(f"compare set: {len(labels)} labelled photos, longer side {args.longer_side} px, "
          f"{min(sizes) // 1024}-{max(sizes) // 1024} KB")

    port, server = start_server(work, "--compare-sets", str(work / "sets"),
                                env={"FOOD_API_STABLE_VERSION": lite0.name})
    try:
        for version in (lite0.name, scaled):
            status, _, data = call(port, "POST", f"/models/food/versions/{version}/load")
            assert status == 200, (version, status, data[:300])
        status, _, data = call(port, "POST", "/models/food/compare", json.dumps({"set": "phone"}),
                               {"Content-Type": "application/json"})
        assert status == 200, (status, data[:500])
        report = json.loads(data)
        full_result, scaled_result = report["versions"][lite0.name], report["versions"][scaled]
        pair = report["pairs"][0]
        print(f"accuracy: full {full_result['accuracy']:.3f}, scaled {scaled_result['accuracy']:.3f}; "
              f"top-1 agreement {pair['agreement']:.3f}")

        phone = enlarged(ROOT / "sample/orange.jpg", args.longer_side)
        for version in (lite0.name, scaled):
            preprocess, total = [], []
            for i in range(args.requests):
                # A new tail after the end marker each time: a cache miss whatever the settings.
                body = multipart([("image", phone + f"request {i}".encode(), "phone.jpg")])
                started = time.perf_counter()
                status, _, data = call(port, "POST", f"/models/food/versions/{version}/predict", body,
                                       {"Content-Type": BOUNDARY_TYPE})
                total.append((time.perf_counter() - started) * 1e3)
                assert status == 200, (status, data[:300])
                preprocess.append(json.loads(data)["timings_ms"]["preprocess"])
            print(f"{version}: a lone {len(phone) // 1024} KB photo, preprocess p50 "
                  f"{statistics.median(preprocess):.1f} ms, client total p50 {statistics.median(total):.1f} ms")
        worse = scaled_result["accuracy"] < full_result["accuracy"] or pair["agreement"] < 1.0
        return 1 if worse else 0
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
