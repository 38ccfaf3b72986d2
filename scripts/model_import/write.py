"""A checked import written as an immutable version: into a model repository (a staging folder
renamed into place), as a bundle for POST /models/{name}/versions, or into the drop-in folder that
POST /reload_model makes `stable` (scripts/update_model.sh)."""

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

from . import UserError

# The text encoder's files come from the bundled model, so that text guidance reads the team's own
# class names (each encoded by the manifest's label template).
TEXT_FORMATS = {"torchscript": "minilm_l6_v2.pt", "onnx": "minilm_l6_v2.onnx"}


def text_encoder(source: Path, image_format: str) -> tuple[dict, dict[str, Path]]:
    """The bundled model's text encoder section, in the same runtime as the image model (an ONNX
    version must load on the build without libtorch), and the files it names."""
    manifest_path = source / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"{manifest_path} is missing: run scripts/setup.sh (it exports the bundled model "
                        "whose text encoder every imported version carries), or pass --text-encoder")
    section = dict(json.loads(manifest_path.read_text())["text_encoder"])
    section.update({"format": image_format, "weights": TEXT_FORMATS[image_format]})
    files = {name: source / name for name in (section["weights"], section["tokenizer"])}
    for path in files.values():
        if not path.is_file():
            raise UserError(f"{path} is missing: run scripts/setup.sh")
    return section, files


def contents(manifest: dict, weights: bytes, mapping: dict, text_files: dict[str, Path]) -> dict[str, bytes]:
    files = {name: path.read_bytes() for name, path in text_files.items()}
    files[manifest["weights"]] = weights
    files["class_mapping.json"] = (json.dumps(mapping, indent=2, ensure_ascii=False) + "\n").encode()
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files


def to_repository(repository: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    final = repository / name / version
    if final.exists():
        # The same import again is the version there (versions are immutable). Its weights are not
        # compared: a TorchScript save is not byte-deterministic (a random serialization id), and
        # the manifest, compared, names the weights' hash.
        weights = json.loads(files["manifest.json"])["weights"]
        same = sorted(os.listdir(final)) == sorted(files) and all(
            (final / f).read_bytes() == data for f, data in files.items() if f != weights)
        if same:
            return final
        raise UserError(f"{final} exists with other files (versions are immutable): pass another --version")
    staging = repository / name / f".staging-{os.getpid()}-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for file, data in files.items():
            (staging / file).write_bytes(data)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def to_bundle(path: Path, files: dict[str, bytes]) -> Path:
    """Files at the top level, sorted, no times or owners: what the server unpacks (bundle.rs)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w:gz", format=tarfile.USTAR_FORMAT) as archive:
            for name in sorted(files):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
                archive.addfile(info, io.BytesIO(files[name]))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def to_drop_in(folder: Path, mapping_path: Path, files: dict[str, bytes]) -> list[str]:
    """The drop-in folder's files replaced, each written beside and renamed into place: first the
    files the old manifest does not name (new weights under a new name), then the class mapping,
    the manifest last, so that a reload in between reads the old manifest's files. Then the
    weights the old manifest named and the new one does not are removed (the server keeps its own
    copy of every version it made from this folder). Returns what was removed."""
    folder.mkdir(parents=True, exist_ok=True)
    old_manifest = folder / "manifest.json"
    old_named = set()
    if old_manifest.is_file():
        try:
            old = json.loads(old_manifest.read_text())
            old_named = {old.get("weights"), old.get("text_encoder", {}).get("weights")} - {None}
        except (ValueError, AttributeError):
            pass
    order = [f for f in files if f not in ("manifest.json", "class_mapping.json")]
    for file in order:
        _replace(folder / file, files[file])
    _replace(mapping_path, files["class_mapping.json"])
    _replace(old_manifest, files["manifest.json"])
    removed = []
    for file in sorted(old_named - set(files)):
        if (folder / file).is_file():
            (folder / file).unlink()
            removed.append(file)
    return removed


def _replace(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
