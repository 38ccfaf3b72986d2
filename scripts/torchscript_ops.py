"""Writes src/runtime/torchscript_ops.txt: the operators (outside the interpreter's own prim::) that
the server lets a TorchScript file use. They are read off the files themselves by the server's own
walk (`food-api torchscript-ops FILE...`, src/runtime/torchscript_ops.cpp): the bundled models in
checkpoints/ and the model repositories, and torchvision's and timm's classifiers (seeded weights, nothing downloaded),
traced and frozen as a TorchScript export makes them, and scripted where they script.

    .venv/bin/python scripts/torchscript_ops.py [--binary target/debug/food-api]

torchvision and timm are needed (pip install torchvision==0.28.0 timm==1.0.31, the versions that
match torch 2.13). Review the diff of the list: an operator that reads or writes files, starts
processes or reaches the network must never be on it.
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "runtime", "torchscript_ops.txt")

TORCHVISION = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
               "efficientnet_b0", "efficientnet_b3", "efficientnet_v2_s", "convnext_tiny", "regnet_y_400mf",
               "regnet_x_400mf", "densenet121", "vit_b_16", "swin_t", "swin_v2_t", "shufflenet_v2_x1_0",
               "squeezenet1_0", "googlenet", "inception_v3", "mnasnet0_5", "resnext50_32x4d", "wide_resnet50_2",
               "alexnet", "vgg11", "vgg11_bn", "maxvit_t"]
TIMM = ["resnet18", "resnet50", "mobilenetv2_100", "mobilenetv3_large_100", "efficientnet_b0", "efficientnet_b2",
        "efficientnetv2_rw_s", "tf_efficientnet_lite0", "convnext_tiny", "regnety_004", "densenet121",
        "vit_tiny_patch16_224", "vit_small_patch16_224", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
        "levit_128", "mobilevit_xs", "ghostnet_100", "rexnet_100", "edgenext_xx_small", "efficientformer_l1",
        "convnextv2_atto", "tinynet_a", "fastvit_t8", "mobilenetv4_conv_small"]


def exports(model, size, out_dir, name):
    """The model traced and frozen, and scripted (frozen) where it scripts: file paths."""
    import torch
    model.eval()
    example = torch.rand(1, 3, size, size)
    paths = []
    with torch.no_grad():
        for how in ("trace", "script"):
            try:
                module = torch.jit.trace(model, example) if how == "trace" else torch.jit.script(model)
                module = torch.jit.freeze(module.eval())
            except Exception as e:  # not every model scripts: the trace is what an export uses
                print(f"  {name}: no {how} ({type(e).__name__})", file=sys.stderr)
                continue
            path = os.path.join(out_dir, f"{name}-{how}.pt")
            module.save(path)
            paths.append(path)
    return paths


def candidates(out_dir):
    import torch
    torch.manual_seed(0)
    # The bundled exports: checkpoints/ and every repository's versions (the bf16 one included).
    files = sorted(glob.glob(os.path.join(ROOT, "checkpoints", "*.pt")) + glob.glob(os.path.join(ROOT, "models*", "*", "*", "*.pt")))
    import torchvision
    for arch in TORCHVISION:
        size = 299 if arch == "inception_v3" else 224
        kwargs = {"aux_logits": False, "init_weights": False} if arch in ("inception_v3", "googlenet") else {}
        model = torchvision.models.get_model(arch, weights=None, num_classes=10, **kwargs)
        files += exports(model, size, out_dir, f"tv-{arch}")
    import timm
    for arch in TIMM:
        model = timm.create_model(arch, pretrained=False, num_classes=10)
        size = model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
        files += exports(model, size, out_dir, f"timm-{arch}")
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "food-api"))
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"torchscript_ops: {args.binary} not found: build it first (cargo build)")
    try:
        import timm  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as e:
        sys.exit(f"torchscript_ops: {e.name} is not installed: pip install torchvision==0.28.0 timm==1.0.31")
    ops = set()
    with tempfile.TemporaryDirectory() as out_dir:
        for path in candidates(out_dir):
            listed = subprocess.run([args.binary, "torchscript-ops", path], capture_output=True, text=True)
            if listed.returncode != 0:
                sys.exit(f"torchscript_ops: {listed.stderr.strip()}")
            ops |= {op for op in listed.stdout.split() if not op.startswith("prim::")}
    header = [line for line in open(OUT).read().splitlines() if line.startswith("#")]
    with open(OUT, "w") as out:
        out.write("\n".join(header + sorted(ops)) + "\n")
    print(f"torchscript_ops: {len(ops)} operators in {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
