"""Every family the importer promises, found from its weights' names and shapes alone: each network
is built on the meta device (shapes only) with 11 classes, its state dict handed to the importer's
detection, also behind DataParallel's and Lightning's prefixes; the answer must be that network
(or a torchvision one with the same layers, the timm one named as an alternative) with 11 classes.

  python tests/import/check_detection.py
"""

import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from model_import import UserError, architectures, checkpoint  # noqa: E402

warnings.simplefilter("ignore")
FAMILIES = [
    "torchvision:resnet18", "torchvision:resnet50", "torchvision:resnet101", "timm:resnet50d",
    "torchvision:mobilenet_v2", "torchvision:mobilenet_v3_large", "torchvision:mobilenet_v3_small",
    "timm:mobilenetv3_large_100", "timm:mobilenetv2_100",
    "torchvision:efficientnet_b0", "torchvision:efficientnet_b1", "torchvision:efficientnet_b2",
    "torchvision:efficientnet_b3", "torchvision:efficientnet_b4", "torchvision:efficientnet_v2_s",
    "timm:efficientnet_b0", "timm:efficientnet_b3", "timm:efficientnetv2_rw_s", "timm:tf_efficientnetv2_b0",
    "torchvision:convnext_tiny", "timm:convnext_nano", "torchvision:regnet_y_400mf", "torchvision:regnet_x_1_6gf",
    "timm:regnety_008", "torchvision:densenet121", "torchvision:vit_b_16", "timm:vit_small_patch16_384",
    "torchvision:swin_t", "timm:swin_tiny_patch4_window7_224", "lite:efficientnet-lite0", "lite:efficientnet-lite2",
]


def main() -> None:
    failures = []
    for arch in FAMILIES:
        state = architectures.build(arch, 11, meta=True).state_dict()
        for wrapped in (state, {f"module.{k}": v for k, v in state.items()}, {f"model.{k}": v for k, v in state.items()}):
            unwrapped, _ = checkpoint.strip_prefixes(wrapped)
            try:
                match = architectures.detect(unwrapped)
            except UserError as e:
                # Asked, not guessed: timm's variants with the same layers and other preprocessing
                # (resnet50d and resnetaa50d, efficientnet_b3 and tf_efficientnet_b3); --arch takes it.
                if arch in str(e) and "--arch" in str(e) and architectures.check_fit(arch, unwrapped) == 11:
                    print(f"{arch}: asked for --arch ({e})")
                    break
                failures.append(f"{arch}: {e}")
                break
            if match.num_classes != 11 or (match.arch != arch and arch not in match.also):
                failures.append(f"{arch}: found {match.arch} with {match.num_classes} classes (also {match.also[:3]})")
                break
        else:
            print(f"{arch}: found ({match.arch})")
    # ViT-Small and DeiT-Small at 224: the same layers, different preprocessing: asked, not guessed.
    try:
        architectures.detect(architectures.build("timm:vit_small_patch16_224", 11, meta=True).state_dict())
        failures.append("timm:vit_small_patch16_224: not reported as ambiguous with deit_small_patch16_224")
    except UserError as e:
        assert "deit_small_patch16_224" in str(e) and "--arch" in str(e), e
    # Something that is none of them: the closest are named.
    odd = {"stem.weight": torch.empty(8, 3, 3, 3, device="meta"), "head.weight": torch.empty(11, 8, device="meta")}
    try:
        architectures.detect(odd)
        failures.append("a two-tensor network was taken for a known one")
    except UserError as e:
        assert "closest" in str(e) and "--arch" in str(e), e
    if failures:
        sys.exit("detection failed:\n" + "\n".join(failures))
    print(f"all {len(FAMILIES)} architectures found, behind prefixes too")


if __name__ == "__main__":
    main()
