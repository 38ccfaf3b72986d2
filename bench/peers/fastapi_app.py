"""The peer users leave: the seed's FastAPI app, written the way it was described.

uvicorn --workers 4, PIL decode, the reference preprocessing, the same TorchScript models, a
100-entry in-memory cache keyed by SHA-256 of image + text, and `POST /predict` with a multipart
`image` and optional `text`. The text is tokenized (`tokenizers`, lru_cache'd) and embedded with the
same MiniLM and combined with the image's answer by the same rule as the Rust server, so both give
the same answers. Nothing here is tuned: it is the baseline, not a straw man either (the handler is
`async def` calling torch inline, as such apps usually are; each worker has torch's default threads).

  FOOD_API_DIR=. uvicorn bench.peers.fastapi_app:app --workers 4 --port 8100

Tuned, as a careful Python user would run it on 2 cores (bench/run.py's "fastapi-tuned"): as many
workers as cores, each with one intra-op thread (FOOD_API_PEER_THREADS=1: workers then never fight
over cores), and, with FOOD_API_PEER_BACKEND=onnx, the image model on onnxruntime (the same ONNX
file the server's ONNX backend loads, graph optimisations on, sequential execution). uvicorn's
asyncio transports already set TCP_NODELAY.

Your own model (bench/run.py --own): FOOD_API_PEER_MODEL_DIR is the imported version's folder
(manifest, class mapping, exported files); with FOOD_API_PEER_EAGER=best_model.pth and
FOOD_API_PEER_ARCH=resnet50 the image model is the seed app's own: that state dict loaded into
torchvision's network and run eagerly, as the workshop app serves a team's checkpoint.
"""

import functools
import hashlib
import io
import json
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import torch
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from PIL import Image
from tokenizers import Tokenizer

ROOT = Path(os.environ.get("FOOD_API_DIR", "."))
sys.path.insert(0, str(ROOT / "scripts"))
from reference import preprocess  # noqa: E402  the same preprocessing the Rust tests check against

MODEL_DIR = Path(os.environ.get("FOOD_API_PEER_MODEL_DIR", ROOT / "checkpoints"))
MANIFEST = json.loads((MODEL_DIR / "manifest.json").read_text())
TEXT = MANIFEST["text_encoder"]
MAPPING = json.loads(((MODEL_DIR if "FOOD_API_PEER_MODEL_DIR" in os.environ else ROOT) / "class_mapping.json").read_text())
EAGER = os.environ.get("FOOD_API_PEER_EAGER")
CLASSES = sorted(MAPPING.items(), key=lambda kv: kv[1])  # (label, index), in index order
TEXT_WEIGHT = float(os.environ.get("FOOD_API_TEXT_WEIGHT", "1.0"))
CACHE_SIZE = 100
THREADS = int(os.environ.get("FOOD_API_PEER_THREADS", "0"))  # 0: torch's default (every core)
BACKEND = os.environ.get("FOOD_API_PEER_BACKEND", "torchscript")

torch.set_grad_enabled(False)
# What the Rust server does to its TorchScript image model, for a peer that knows the switch too.
# In Python it is process-wide: the sentence encoder is fused as well.
if os.environ.get("FOOD_API_PEER_ONEDNN_FUSION") == "1":
    torch.jit.enable_onednn_fusion(True)
if THREADS:
    torch.set_num_threads(THREADS)
if BACKEND == "onnx":
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS or os.cpu_count()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # FOOD_API_PEER_ONNX_FILE: another ONNX file of the same network (bench/run.py: the int8 version's).
    onnx_file = os.environ.get("FOOD_API_PEER_ONNX_FILE", str(MODEL_DIR / "efficientnet_lite0.onnx"))
    session = onnxruntime.InferenceSession(onnx_file, options,
                                           providers=["CPUExecutionProvider"])

    def model(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
elif EAGER:
    import torchvision

    model = torchvision.models.get_model(os.environ["FOOD_API_PEER_ARCH"], num_classes=MANIFEST["num_outputs"])
    model.load_state_dict(torch.load(EAGER, map_location="cpu", weights_only=True))
    model.eval()
else:
    model = torch.jit.load(str(MODEL_DIR / MANIFEST["weights"]))
encoder = torch.jit.load(str(MODEL_DIR / TEXT["weights"]))
tokenizer = Tokenizer.from_file(str(MODEL_DIR / TEXT["tokenizer"]))
tokenizer.no_padding()
tokenizer.enable_truncation(TEXT["max_tokens"])


@functools.lru_cache(maxsize=1000)
def embed(text: str) -> torch.Tensor:
    ids = torch.tensor([tokenizer.encode(text).ids])
    return encoder(ids, torch.ones_like(ids))[0]


LABEL_EMBEDDINGS = torch.stack([embed(TEXT["label_template"].replace("{}", label)) for label, _ in CLASSES])
cache: "OrderedDict[str, dict]" = OrderedDict()
app = FastAPI()


def answer(image_bytes: bytes, text: Optional[str]) -> dict:
    x = torch.from_numpy(preprocess(io.BytesIO(image_bytes), MANIFEST)).unsqueeze(0)
    started = time.perf_counter()
    probs = model(x).softmax(-1)[0]
    inference_ms = (time.perf_counter() - started) * 1e3
    image = torch.stack([probs[i] for _, i in CLASSES])
    combined = image
    if text:
        text_probs = (LABEL_EMBEDDINGS @ embed(text) / TEXT["temperature"]).softmax(-1)
        weighted = image * text_probs.pow(TEXT_WEIGHT)
        combined = weighted / weighted.sum() * image.sum()
    order = combined.argsort(descending=True)[:5].tolist()
    top_k = [{"label": CLASSES[i][0], "index": CLASSES[i][1], "probability": float(combined[i])} for i in order]
    return {"label": top_k[0]["label"], "confidence": top_k[0]["probability"], "top_k": top_k, "inference_ms": inference_ms}


@app.post("/predict")
async def predict(image: UploadFile = File(...), text: Optional[str] = Form(None)):
    data = await image.read()
    key = hashlib.sha256(data + b"\0" + (text or "").encode()).hexdigest()
    if key in cache:
        cache.move_to_end(key)
        return {**cache[key], "cache_hit": True}
    try:
        result = answer(data, text)
    except (OSError, Image.DecompressionBombError) as e:
        raise HTTPException(400, f"invalid image: {e}")
    cache[key] = result
    if len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    return {**result, "cache_hit": False}


@app.get("/health")
async def health():
    return {"status": "ok"}
