"""The class mapping as teams have it, into the server's form {"label": index}:
  {"pizza": 0, "burger": 1}      the seed app's class_mapping.json
  ["pizza", "burger"]            a list of names, index = position (ImageFolder's classes)
  {"0": "pizza", "1": "burger"}  index -> name (ImageFolder's class_to_idx inverted)
"""

import json
from pathlib import Path

from . import UserError


def read(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: the class mapping is JSON") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): "
                        'expected {"pizza": 0, ...}, ["pizza", ...] or {"0": "pizza", ...}') from None
    return parse(value, str(path))


def parse(value, where: str) -> dict[str, int]:
    if isinstance(value, list):
        pairs = [(name, i) for i, name in enumerate(value)]
    elif isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        pairs = []
        for key, name in value.items():
            if not str(key).lstrip("-").isdigit():
                raise UserError(f"{where}: {key!r} -> {name!r} is neither name -> index nor index -> name")
            pairs.append((name, int(key)))
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise UserError(f'{where} holds a {type(value).__name__}: expected {{"pizza": 0, ...}}, a list of names or {{"0": "pizza", ...}}')
    if not pairs:
        raise UserError(f"{where} names no classes")
    mapping: dict[str, int] = {}
    for name, index in pairs:
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"{where}: {name!r} is not a class name")
        if isinstance(index, bool) or not isinstance(index, int):
            raise UserError(f"{where}: {name!r} maps to {index!r}, not an integer index")
        if name in mapping:
            raise UserError(f"{where}: {name!r} appears twice")
        mapping[name] = index
    seen: dict[int, str] = {}
    for name, index in mapping.items():
        if index in seen:
            raise UserError(f"{where}: index {index} is given to both {seen[index]!r} and {name!r}")
        seen[index] = name
    return mapping


def check_against_head(mapping: dict[str, int], num_classes: int, where: str) -> None:
    if len(mapping) != num_classes:
        raise UserError(f"{where} names {len(mapping)} classes, but the model's head has {num_classes} outputs: "
                        "use the mapping saved with these weights")
    outside = sorted(i for i in mapping.values() if not 0 <= i < num_classes)
    if outside:
        raise UserError(f"{where}: index {outside[0]} is outside the head's 0..{num_classes - 1}")
