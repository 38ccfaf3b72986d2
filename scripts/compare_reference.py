"""The offline reference for POST /models/{name}/compare: each version's top-1 and top-k accuracy
on a labelled set, computed with PyTorch and the reference preprocessing (scripts/reference.py),
printed as JSON. The integration test compares the server's answer with it.

  .venv/bin/python scripts/compare_reference.py models/food/lite0-* models/food/lite2-* --set sample/labelled
"""

import argparse
import json
from pathlib import Path

import torch

from reference import preprocess


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("versions", nargs="+", type=Path, help="version folders")
    parser.add_argument("--set", required=True, type=Path, help="a folder with labels.json")
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    labels = json.loads((args.set / "labels.json").read_text())
    report = {}
    for folder in args.versions:
        manifest = json.loads((folder / "manifest.json").read_text())
        mapping = json.loads((folder / "class_mapping.json").read_text())
        model = torch.jit.load(str(folder / manifest["weights"]))
        top1 = topk = 0
        answers = {}
        for file, label in sorted(labels.items()):
            x = torch.from_numpy(preprocess(args.set / file, manifest)).unsqueeze(0)
            with torch.no_grad():
                probs = model(x).softmax(-1)[0]
            ranked = [name for _, name in sorted(((float(probs[i]), name) for name, i in mapping.items()), reverse=True)]
            answers[file] = ranked[0]
            top1 += ranked[0] == label
            topk += label in ranked[: args.top_k]
        report[folder.name] = {"accuracy": top1 / len(labels), "top_k_accuracy": topk / len(labels), "answers": answers}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
