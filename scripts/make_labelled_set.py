"""Makes sample/labelled/: a small labelled set of real food photos for POST /models/{name}/compare
and its tests, from the photos in sample/ (themselves from registry packages, see sample/SOURCES):
each photo as it is (scaled to 400 px on its long side), mirrored, centre-cropped to 80%, and turned
by 8 degrees, with the label a person gives it.

  .venv/bin/python scripts/make_labelled_set.py      # writes sample/labelled/ (committed, ~250 KB)
"""
import json
from pathlib import Path

from PIL import Image, ImageOps

PHOTOS = {"coffee.png": "espresso", "orange.jpg": "orange", "apple.jpg": "Granny Smith"}
out = Path("sample/labelled")
out.mkdir(parents=True, exist_ok=True)
labels = {}
for name, label in PHOTOS.items():
    photo = Image.open(Path("sample") / name).convert("RGB")
    photo.thumbnail((400, 400))
    w, h = photo.size
    variants = {
        "plain": photo,
        "mirrored": ImageOps.mirror(photo),
        "cropped": photo.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "turned": photo.rotate(8, resample=Image.BICUBIC, expand=False, fillcolor=(255, 255, 255)),
    }
    for variant, image in variants.items():
        file = f"{Path(name).stem}-{variant}.jpg"
        image.save(out / file, quality=88)
        labels[file] = label
(out / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
print(f"{len(labels)} labelled photos in {out}")
