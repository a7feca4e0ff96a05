"""Unknown keys in a config file: ignored (as Infernet does), but named with their line.

Pydantic's ``extra="ignore"`` drops a typo such as ``server.prot`` silently, and the node then
runs on the default. This walks the file's own tree next to the models, so ``check-config``
and ``run`` can say which key was ignored and where it is.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from node_agent.config import Config


@dataclass(frozen=True)
class UnknownKey:
    path: str  # e.g. "server.prot", "containers[1].imgae"
    line: int | None  # 1-based; None when the file's lines are not known (JSON fallback)

    def describe(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: unknown key '{self.path}' (ignored)"


# What a value under a field may hold: a model, a mapping or sequence of something, or a leaf.
_Shape = Any


def _shape(annotation: Any) -> _Shape:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _shape(args[0])
    if origin in (typing.Union, types.UnionType):
        shapes = [_shape(a) for a in args if a is not type(None)]
        found = [s for s in shapes if s is not None]
        return found[0] if len(found) == 1 else None
    if origin in (tuple, list, Sequence) and args:
        inner = _shape(args[0])
        return ("seq", inner) if inner is not None else None
    if origin in (dict, Mapping) and len(args) == 2:
        inner = _shape(args[1])
        return ("map", inner) if inner is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.model_config.get("extra") == "allow":
            return None  # any key is meant to be kept
        return annotation
    return None


def _fields(model: type[BaseModel]) -> dict[str, _Shape]:
    names: dict[str, _Shape] = {}
    for name, field in model.model_fields.items():
        shape = _shape(field.annotation)
        names[name] = shape
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):
                names[alias] = shape
    return names


def _mapping(node: Any) -> list[tuple[str, int | None, Any]] | None:
    if isinstance(node, yaml.MappingNode):
        return [(str(k.value), k.start_mark.line + 1, v) for k, v in node.value]
    if isinstance(node, dict):
        return [(str(k), None, v) for k, v in node.items()]
    return None


def _sequence(node: Any) -> list[Any] | None:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, list):
        return node
    return None


def _walk(node: Any, shape: _Shape, path: str, out: list[UnknownKey]) -> None:
    if shape is None:
        return
    if isinstance(shape, tuple):
        kind, inner = shape
        if kind == "seq":
            for index, item in enumerate(_sequence(node) or ()):
                _walk(item, inner, f"{path}[{index}]", out)
        else:
            for key, _, value in _mapping(node) or ():
                _walk(value, inner, f"{path}.{key}" if path else key, out)
        return
    entries = _mapping(node)
    if entries is None:
        return  # another accepted form (``gpu: true``, a secret as a string): nothing to name
    known = _fields(shape)
    for key, line, value in entries:
        where = f"{path}.{key}" if path else key
        if key not in known:
            out.append(UnknownKey(where, line))
        else:
            _walk(value, known[key], where, out)


def unknown_keys(text: str, *, json_file: bool = False) -> list[UnknownKey]:
    """Every key of the document that no setting reads, in file order."""
    try:
        tree: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        if not json_file:
            return []  # load_config reports the syntax error itself
        try:
            tree = json.loads(text)  # JSON that PyYAML will not read (tabs): no lines then
        except ValueError:
            return []
    out: list[UnknownKey] = []
    _walk(tree, Config, "", out)
    return out


def find_unknown_keys(path: Path) -> list[UnknownKey]:
    """:func:`unknown_keys` of a config file; nothing when it cannot be read."""
    try:
        text = path.read_text()
    except OSError:
        return []
    return unknown_keys(text, json_file=path.suffix == ".json")
