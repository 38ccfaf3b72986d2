"""Makes what teams bring to scripts/import_model.py, in each form they save it, with the answers
eager PyTorch gives (the notebook's own preprocessing: torchvision's transforms, timm's
create_transform), for tests/api/import.rs.

  python tests/import/make_checkpoints.py OUT

Each network is seeded, and its head is built from the sample photos' own features (one class per
photo of sample/, as prototypes): random weights alone answer the same class for every image, this
head does not. Writes OUT/<case>/ with the weights and the mapping, and OUT/expected.json:
{case: {"arch", "weights", "classes", "answers": {photo: {label: probability}}}}.
"""

import json
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["coffee", "cat", "fruits", "apple", "orange"]  # sample/<name>.{png,jpg}, one class each
warnings.simplefilter("ignore")


def photos() -> list[Path]:
    folder = ROOT / "sample"
    return sorted(p for p in [*folder.glob("*.jpg"), *folder.glob("*.png"), *(folder / "labelled").glob("*.jpg")])


def transform(arch: str, model):
    from PIL import Image

    if arch.startswith("timm:"):
        import timm.data

        t = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    else:
        from torchvision import transforms

        t = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return lambda path: t(Image.open(path).convert("RGB"))


def build(arch: str) -> torch.nn.Module:
    source, name = arch.split(":")
    torch.manual_seed(1234)
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=len(CLASSES)).eval()
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=len(CLASSES)).eval()


def prototype_head(model, images: dict) -> None:
    """The last Linear's rows become the sample photos' centred, scaled features."""
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    captured = []
    hook = head.register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0].detach()))
    with torch.no_grad():
        model(torch.stack([images[f"{c}"] for c in CLASSES]))
    hook.remove()
    features = captured[0]
    mean = features.mean(0)
    centred = features - mean
    scale = centred.norm(dim=1).mean()
    rows = centred / centred.norm(dim=1, keepdim=True)
    with torch.no_grad():
        head.weight.copy_(6 * rows / scale)
        head.bias.copy_(-(6 * rows / scale) @ mean)


# case -> (architecture, how it is saved, the mapping's form)
CASES = {
    "resnet18": ("torchvision:resnet18", "dataparallel", "list"),
    "mobilenet_v3_small": ("torchvision:mobilenet_v3_small", "training_checkpoint", "name_to_index"),
    "efficientnet_b0": ("timm:efficientnet_b0", "safetensors", "index_to_name"),
    "vit_tiny": ("timm:vit_tiny_patch16_224", "lightning", "name_to_index"),
}


def save(model, how: str, folder: Path) -> Path:
    state = model.state_dict()
    if how == "dataparallel":
        path = folder / "best_model.pth"
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif how == "training_checkpoint":
        path = folder / "checkpoint.pth"
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        torch.save({"epoch": 12, "model_state_dict": state, "optimizer_state_dict": optimizer.state_dict(),
                    "best_acc": 0.91}, path)
    elif how == "safetensors":
        from safetensors.torch import save_file

        path = folder / "model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:  # a PyTorch Lightning checkpoint of a LightningModule holding the network as self.model
        path = folder / "epoch=3-step=400.ckpt"
        torch.save({"epoch": 3, "global_step": 400, "pytorch-lightning_version": "2.5.0",
                    "state_dict": {f"model.{k}": v for k, v in state.items()}, "lr_schedulers": []}, path)
    return path


def mapping(form: str):
    if form == "list":
        return CLASSES
    if form == "index_to_name":
        return {str(i): c for i, c in enumerate(CLASSES)}
    return {c: i for i, c in enumerate(CLASSES)}


def main() -> None:
    out = Path(sys.argv[1])
    expected = {}
    sample = {p.stem: p for p in (ROOT / "sample").iterdir() if p.suffix in (".jpg", ".png")}
    for case, (arch, how, form) in CASES.items():
        model = build(arch)
        preprocess = transform(arch, model)
        prototype_head(model, {c: preprocess(sample[c]) for c in CLASSES})
        folder = out / case
        folder.mkdir(parents=True, exist_ok=True)
        weights = save(model, how, folder)
        (folder / "classes.json").write_text(json.dumps(mapping(form)))
        answers = {}
        with torch.no_grad():
            for path in photos():
                probs = model(preprocess(path).unsqueeze(0)).softmax(-1)[0]
                answers[str(path.relative_to(ROOT / "sample"))] = {c: float(probs[i]) for i, c in enumerate(CLASSES)}
        tops = {max(a, key=a.get) for a in answers.values()}
        assert len(tops) >= 3, f"{case}: the seeded head answers {tops} only"
        expected[case] = {"arch": arch, "weights": str(weights), "classes": str(folder / "classes.json"),
                          "answers": answers}
        print(f"{case}: {weights.name}, top-1 answers {sorted(tops)}")
    # The same resnet18 pickled whole (torch.save(model)): refused unless --trust-pickle.
    torch.save(build("torchvision:resnet18"), out / "whole_model.pth")
    (out / "expected.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
