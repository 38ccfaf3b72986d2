"""Seeds for the fuzz targets, made from the sample photos: each shrunk to a thumbnail and saved in
every format the server decodes (plus the CMYK and EXIF-rotated JPEG fixtures); for the upload
target, the same thumbnails inside multipart bodies with and without a text.

  .venv/bin/python fuzz/make_seeds.py   # writes fuzz/seeds/{image,upload}/
"""
import io
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "gif": "GIF", "tiff": "TIFF"}


def encoded(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def multipart(image_bytes, filename, text=None):
    parts = [b'--fuzz\r\nContent-Disposition: form-data; name="image"; filename="' + filename.encode()
             + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + image_bytes + b"\r\n"]
    if text is not None:
        parts.append(b'--fuzz\r\nContent-Disposition: form-data; name="text"\r\n\r\n' + text.encode() + b"\r\n")
    return b"".join(parts) + b"--fuzz--\r\n"


def main():
    (SEEDS / "image").mkdir(parents=True, exist_ok=True)
    (SEEDS / "upload").mkdir(parents=True, exist_ok=True)
    images = {}
    for photo in sorted((ROOT / "sample").glob("*.[jp][pn]g")):
        thumb = Image.open(photo).convert("RGB")
        thumb.thumbnail((40, 40))
        for ext, fmt in FORMATS.items():
            images[f"{photo.stem}.{ext}"] = encoded(thumb, fmt)
        images[f"{photo.stem}-progressive.jpg"] = encoded(thumb, "JPEG", progressive=True)
        images[f"{photo.stem}-grey.png"] = encoded(thumb.convert("L"), "PNG")
        images[f"{photo.stem}-rgba.png"] = encoded(thumb.convert("RGBA"), "PNG")
    for fixture in ["orange_cmyk.jpg", "orange_exif_rotated.jpg"]:
        image = Image.open(ROOT / "tests/fixtures" / fixture)
        exif = image.info.get("exif")
        image.thumbnail((40, 40))
        images[fixture] = encoded(image, "JPEG", **({"exif": exif} if exif else {}))
    for name, data in images.items():
        (SEEDS / "image" / name).write_bytes(data)
    for i, (name, data) in enumerate(sorted(images.items())[::4]):
        text = ["Image of pizza", None, "a green apple", ""][i % 4]
        (SEEDS / "upload" / f"{name}.multipart").write_bytes(multipart(data, name, text))
    total = sum(p.stat().st_size for p in SEEDS.rglob("*") if p.is_file())
    print(f"{len(images)} image seeds, {len(list((SEEDS / 'upload').iterdir()))} upload seeds, {total / 1024:.0f} KB")


if __name__ == "__main__":
    main()
