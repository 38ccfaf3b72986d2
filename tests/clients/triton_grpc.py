"""NVIDIA's tritonclient.grpc against the server's gRPC port, as its users call it: health,
metadata, the repository index, infer with the image as raw bytes (what set_data_from_numpy sends
over gRPC) and an optional text, classification, a version, statistics, and errors as gRPC codes.
Run by tests/api/clients.rs:

    triton_grpc.py HOST:PORT PHOTO

Exits non-zero listing what failed.
"""
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

failures = []


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def bytes_input(name: str, element: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([element], dtype=np.object_))
    return tensor


def refused(call, code: str, what: str) -> None:
    try:
        call()
        check(False, f"{what}: refused")
    except InferenceServerException as e:
        check(code in str(e.status()), f"{what}: {e.status()} {e.message()[:100]}")


def main(url: str, photo_path: str) -> int:
    photo = open(photo_path, "rb").read()
    client = grpcclient.InferenceServerClient(url)
    check(client.is_server_live() and client.is_server_ready(), "is_server_live, is_server_ready")
    server = client.get_server_metadata(as_json=True)
    check("classification" in server["extensions"], f"server metadata: {server['name']} {server['extensions']}")
    check(client.is_model_ready("food"), "is_model_ready(food)")
    meta = client.get_model_metadata("food", as_json=True)
    check([i["name"] for i in meta["inputs"]] == ["image", "text"] and meta["platform"],
          f"model metadata: {meta['platform']} inputs {meta['inputs']}")
    index = client.get_model_repository_index(as_json=True)
    check(any(m["name"] == "food" and m.get("state") == "READY" for m in index["models"]),
          f"repository index: {index['models']}")

    # The defaults: every output, raw.
    result = client.infer("food", [bytes_input("image", photo)])
    label, probability = result.as_numpy("label"), result.as_numpy("probability")
    check(label.tolist() == [b"lemon"] and probability.dtype == np.float32 and 0 < probability[0] <= 1,
          f"infer with raw image bytes: {label} {probability}")
    top = result.as_numpy("top_k")
    check(top.shape[0] == 1 and top[0][0].decode().split(":")[2] == "lemon", f"top_k by default: {top.shape}")

    # A text that guides the answer, and the classification extension.
    outputs = [grpcclient.InferRequestedOutput("label"), grpcclient.InferRequestedOutput("top_k", class_count=3)]
    result = client.infer("food", [bytes_input("image", photo), bytes_input("text", b"a pile of oranges")],
                          outputs=outputs)
    top = result.as_numpy("top_k")
    check(result.as_numpy("label").tolist() == [b"orange"] and top.shape == (1, 3)
          and top[0][0].decode().split(":")[2] == "orange", f"a text and classification, top 3: {top}")
    names = [o.name for o in result.get_response().outputs]
    check(names == ["label", "top_k"], f"only the outputs asked for: {names}")

    # A version by name, and one pinned through metadata (as REST's X-Model-Version header).
    version = meta["versions"][0]
    result = client.infer("food", [bytes_input("image", photo)], model_version=version)
    check(result.get_response().model_version == version, f"infer on version {version}")
    result = client.infer("food", [bytes_input("image", photo)], headers={"x-model-version": version})
    check(result.get_response().model_version == version, "a version pinned with x-model-version metadata")

    stats = client.get_inference_statistics("food", as_json=True)
    counted = sum(int(s.get("inference_count", 0)) for s in stats["model_stats"])
    check(counted >= 4, f"statistics count the requests: {counted}")

    # Mistakes are gRPC errors with the REST status's meaning.
    refused(lambda: client.infer("food", [bytes_input("image", b"not an image")]), "INVALID_ARGUMENT", "a non-image")
    refused(lambda: client.infer("no-such-model", [bytes_input("image", photo)]), "NOT_FOUND", "an unknown model")
    refused(lambda: client.infer("food", [bytes_input("image", photo)],
                                 outputs=[grpcclient.InferRequestedOutput("top_k", class_count=10_000)]),
            "INVALID_ARGUMENT", "a classification count above --max-top-k")
    refused(lambda: client.get_model_config("food"), "UNIMPLEMENTED", "an RPC this server does not offer")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
