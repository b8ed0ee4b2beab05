"""Reading and validating the project's TOML rule files (mapping rules, presence rules) the same way."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from zoomcal.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid TOML: {exc}") from exc


def validate(model: type[M], data: dict[str, Any], what: str) -> M:
    """The model, or a ConfigError listing every problem as `dotted.path: message`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid {what}: {problems}") from exc


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)      # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def dumps(data: dict[str, Any]) -> str:
    """A rules file as text: top-level values first, then each list of tables as [[name]] sections (what the rule
    files hold; nested tables are written inline)."""
    head = [f"{_key(k)} = {_value(v)}" for k, v in data.items()
            if v is not None and not (isinstance(v, list) and v and all(isinstance(i, dict) for i in v))]
    out = ["\n".join(head)] if head else []
    for name, items in data.items():
        if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
            for item in items:
                out.append(f"[[{_key(name)}]]\n" + "\n".join(f"{_key(k)} = {_value(v)}" for k, v in item.items()
                                                          if v is not None))
    return "\n\n".join(out) + "\n"
