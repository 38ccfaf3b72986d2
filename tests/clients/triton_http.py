"""The Open Inference Protocol's clients from PyPI against the running server, as their users call
them: NVIDIA's tritonclient.http with its defaults (the binary data extension) and in JSON mode,
and KServe's InferenceRESTClient. Run by tests/api/clients.rs:

    triton_http.py HOST:PORT PHOTO

Exits non-zero listing what failed.
"""
import asyncio
import base64
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

failures = []


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def text_of(element) -> str:
    """A BYTES element: bytes from binary outputs, str from JSON ones."""
    return element.decode() if isinstance(element, bytes) else element


def image_input(photo: bytes, binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput("image", [1], "BYTES")
    # Binary: the raw JPEG as the element; JSON: its base64 (JSON cannot carry raw bytes).
    element = photo if binary else base64.b64encode(photo)
    tensor.set_data_from_numpy(np.array([element], dtype=np.object_), binary_data=binary)
    return tensor


def main(url: str, photo_path: str) -> int:
    photo = open(photo_path, "rb").read()
    client = httpclient.InferenceServerClient(url)
    check(client.is_server_live() and client.is_server_ready(), "is_server_live, is_server_ready")
    server = client.get_server_metadata()
    check("classification" in server["extensions"], f"server metadata: {server['name']} {server['extensions']}")
    check(client.is_model_ready("food"), "is_model_ready(food)")
    meta = client.get_model_metadata("food")
    check([i["name"] for i in meta["inputs"]] == ["image", "text"], f"model metadata inputs: {meta['inputs']}")
    index = client.get_model_repository_index()
    check(any(m["name"] == "food" and m["state"] == "READY" for m in index), f"repository index: {index}")

    # Defaults: binary inputs, and every output in binary (no outputs named).
    result = client.infer("food", [image_input(photo, binary=True)])
    label = result.as_numpy("label")
    probability = result.as_numpy("probability")
    check(label.tolist() == [b"lemon"] and probability.dtype == np.float32 and 0 < probability[0] <= 1,
          f"infer with the defaults (raw image bytes, binary outputs): {label} {probability}")
    check(all("parameters" in o for o in result.get_response()["outputs"]), "the outputs came in binary")

    # JSON mode: base64 in, JSON out; an optional text; the classification extension.
    text = httpclient.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(["a pile of oranges"], dtype=np.object_), binary_data=False)
    outputs = [httpclient.InferRequestedOutput("label", binary_data=False),
               httpclient.InferRequestedOutput("top_k", binary_data=False, class_count=3)]
    result = client.infer("food", [image_input(photo, binary=False), text], outputs=outputs)
    response = result.get_response()
    top = result.as_numpy("top_k")
    check([text_of(x) for x in result.as_numpy("label")] == ["orange"] and "data" in response["outputs"][0],
          f"infer in JSON with base64 and a text: {result.as_numpy('label')}")
    check(top.shape == (1, 3) and text_of(top[0][0]).split(":")[2] == "orange", f"classification, top 3: {top}")

    # Mixed: binary image, one output binary and one JSON.
    outputs = [httpclient.InferRequestedOutput("label", binary_data=True),
               httpclient.InferRequestedOutput("probability", binary_data=False)]
    result = client.infer("food", [image_input(photo, binary=True), text], outputs=outputs)
    kinds = {o["name"]: "parameters" in o for o in result.get_response()["outputs"]}
    check(kinds == {"label": True, "probability": False} and result.as_numpy("label").tolist() == [b"orange"],
          f"per-output binary_data honoured: {kinds}")

    # A version by name, and statistics that counted these requests.
    version = meta["versions"][0]
    result = client.infer("food", [image_input(photo, binary=True)], model_version=version)
    check(result.get_response()["model_version"] == version, f"infer on version {version}")
    stats = client.get_inference_statistics("food")
    counted = sum(s["inference_count"] for s in stats["model_stats"])
    check(counted >= 4, f"statistics count the requests: {counted}")

    # A mistake is a clean error through the client.
    try:
        client.infer("food", [httpclient.InferInput("image", [1], "BYTES").set_data_from_numpy(
            np.array([b"not an image"], dtype=np.object_))])
        check(False, "a non-image is refused")
    except InferenceServerException as e:
        check(e.status() in ("415", "400", 415, 400) or "415" in str(e), f"a non-image: {str(e)[:120]}")

    # KServe's own SDK client (REST, v2).
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def kserve_infer():
        rest = InferenceRESTClient(RESTConfig(protocol="v2"))
        tensor = InferInput("image", [1], "BYTES", [base64.b64encode(photo).decode()])
        response = await rest.infer(f"http://{url}", InferRequest(model_name="food", infer_inputs=[tensor]),
                                    model_name="food")
        await rest.close()
        return response

    response = asyncio.run(kserve_infer())
    labels = [o for o in response.outputs if o.name == "label"][0].data
    check(labels == ["lemon"], f"kserve InferenceRESTClient infer: {labels}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
