"""The two images side by side, for real: food-api:latest (libtorch and ONNX Runtime) and
food-api:onnx (built without libtorch, Lite0 and the text encoder as ONNX). Run by
scripts/compose-test.sh once both are built:

    check_images.py TORCH_IMAGE ONNX_IMAGE SAMPLE_DIR

Starts each as a user would (`docker run`, read-only root filesystem, /tmp as tmpfs, a port on
loopback), waits for its health check, and checks that:
1. the ONNX image serves ONNX for both models, the other TorchScript (/system_status);
2. both answer every sample photo, with and without a text, with the same label and top five and
   probabilities within 1e-3;
3. a text-only request is answered by the ONNX image's encoder too (the text changes the answer).
Prints each image's size and time to healthy; exits non-zero listing what failed. Removes the
containers at the end.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import requests

from checks import check, failures, free_port

PHOTOS = ["apple.jpg", "cat.png", "coffee.png", "fruits.jpg", "orange.jpg"]
TEXTS = [None, "a pile of oranges", "coffee with milk, no sugar"]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


class Container:
    def __init__(self, image: str):
        self.image, self.port = image, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.id = None

    def __enter__(self):
        started = time.monotonic()
        self.id = docker("run", "-d", "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/opt/food-api/data:uid=10001",
                         "-p", f"127.0.0.1:{self.port}:8000", self.image)
        while docker("inspect", "-f", "{{.State.Health.Status}}", self.id) != "healthy":
            if docker("inspect", "-f", "{{.State.Running}}", self.id) != "true" or time.monotonic() - started > 180:
                raise RuntimeError(f"{self.image} did not become healthy:\n{docker('logs', '--tail', '30', self.id)}")
            time.sleep(0.2)
        self.ready_s = time.monotonic() - started
        return self

    def __exit__(self, *exc):
        subprocess.run(["docker", "rm", "-f", self.id], capture_output=True)

    def predict(self, photo: bytes, text):
        files = {"image": ("dish", photo)} | ({"text": (None, text)} if text else {})
        r = requests.post(f"{self.base}/predict", files=files, timeout=30)
        r.raise_for_status()
        return r.json()


def top(body):
    return [(c["label"], c["probability"]) for c in body["top_k"]]


def main(torch_image: str, onnx_image: str, sample_dir: str) -> int:
    for image in (torch_image, onnx_image):
        print(f"{image}: {int(docker('image', 'inspect', '-f', '{{.Size}}', image)) / 1e6:.0f} MB")
    with Container(torch_image) as torch, Container(onnx_image) as onnx:
        for c in (torch, onnx):
            print(f"{c.image}: healthy {c.ready_s:.1f} s after docker run")
        formats = {}
        for c in (torch, onnx):
            model = requests.get(f"{c.base}/system_status", timeout=10).json()["model"]
            formats[c.image] = (model["format"], model["text_encoder"]["format"])
        check(formats[onnx_image] == ("onnx", "onnx"), f"{onnx_image} serves ONNX for both models: {formats[onnx_image]}")
        check(formats[torch_image] == ("torchscript", "torchscript"), f"{torch_image} serves TorchScript: {formats[torch_image]}")

        worst, mismatched = 0.0, []
        for name in PHOTOS:
            photo = (Path(sample_dir) / name).read_bytes()
            for text in TEXTS:
                a, b = top(torch.predict(photo, text)), top(onnx.predict(photo, text))
                if [l for l, _ in a] != [l for l, _ in b]:
                    mismatched.append((name, text, a[0][0], b[0][0]))
                worst = max([worst] + [abs(p - q) for (_, p), (_, q) in zip(a, b)])
        check(not mismatched, f"same label and top five on {len(PHOTOS)} photos x {len(TEXTS)} texts: {mismatched}")
        check(worst < 1e-3, f"probabilities within 1e-3 of each other (largest difference {worst:.1e})")

        photo = (Path(sample_dir) / "fruits.jpg").read_bytes()
        plain, guided = onnx.predict(photo, None), onnx.predict(photo, "a cup of coffee")
        check(top(plain) != top(guided), f"the ONNX text encoder changes the answer: {plain['label']} -> {guided['label']}")

    print(json.dumps({"failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
