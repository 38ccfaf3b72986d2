"""Makes the test images that the Rust image encoders cannot: a CMYK JPEG and an EXIF-rotated JPEG.

  .venv/bin/python scripts/make_fixtures.py      # writes tests/fixtures/*.jpg (committed, a few KB)
"""
from pathlib import Path

from PIL import Image

out = Path("tests/fixtures")
photo = Image.open("sample/orange.jpg").convert("RGB")
# A 2:1 band across the middle, so that a wrong orientation shows in the dimensions.
small = photo.crop((0, photo.height // 4, photo.width, 3 * photo.height // 4)).resize((256, 128))
small.convert("CMYK").save(out / "orange_cmyk.jpg", quality=85)

# Stored turned 90 degrees counter-clockwise, with EXIF orientation 6 ("rotate 90 clockwise to
# show"): a viewer that honours EXIF shows it upright, as wide as the original.
turned = small.rotate(90, expand=True)
exif = Image.Exif()
exif[0x0112] = 6
turned.save(out / "orange_exif_rotated.jpg", quality=85, exif=exif)
print(f"original {small.size}, stored {turned.size}")
