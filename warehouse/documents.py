"""Loading catalog documents (YAML or JSON) into validated models, with every problem reported.

Numbers are read as `Decimal` from their source text (`price: 0.30` is exactly 0.30, never a
float), every mapping remembers its line so errors point at it, and a key given twice in one
mapping is an error rather than a silent overwrite.  Validation collects all problems of all
files before raising one `DocumentError`.
"""

from __future__ import annotations

import json
import re
import reprlib
import types
import typing
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from warehouse.errors import DocumentError, suggest
from warehouse.models import KINDS, Model

# How a problem quotes the value it refuses: a long text or a deep list (YAML aliases can nest
# millions of strings) shortened, never printed whole.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 4, 4, 1


class _LineDict(dict):
    """A mapping that knows the (1-based) line it started on."""

    line: int | None = None


# libyaml's parser when PyYAML has it (its wheels do): the pure-Python one took 17 of the 20 s
# that applying the 10,000 customers and contracts of the invoice benchmark's catalog took.
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    result = _LineDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a mapping key is a text or a number, not a {type(key).__name__}",
                key_node.start_mark,
            )
        if key in result:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is given twice in one mapping",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node))
    try:
        return Decimal(text)
    except InvalidOperation:
        # .inf / .nan: not a finite decimal, let the model reject it with its field name (and
        # Infinity for an infinity, as written).
        infinite = text.lower().replace(".inf", "Infinity")
        return Decimal(infinite) if infinite.lstrip("+-") == "Infinity" else Decimal("NaN")


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
# Plain scalars are read like JSON values.  Timestamps stay strings: the models parse them
# (naive = UTC) and keep microseconds.  Only true/false are booleans and only JSON's decimal
# integers and fractions are numbers (plus .inf/.nan, which the models refuse by name): YAML
# 1.1 also read `NO`/`on`/`y` as booleans, `02139` as octal, `0x1F` as hex and `1:30` as
# sexagesimal, so a property value `in_values: [NO]` (Norway) became "false".  Other texts,
# exponent forms included, stay strings, so a property value keeps its text exactly (`1e5`,
# not `1E+5`) and a price `1.5e-3`, `010` or `1_000` still reads as a decimal from its text.
_YAML_11_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("timestamp", "bool", "int", "float")}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML_11_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# `-0` stays text: as an int it would lose its sign, and a property value -0 is "-0".
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:0|-?[1-9][0-9]*)$"), list("-0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:-?(?:0|[1-9][0-9]*)\.[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"),
)


def _json_object(pairs: list[tuple[str, Any]]) -> _LineDict:
    result = _LineDict()
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} is given twice in one object")
        result[key] = value
    return result


def load_text(text: str, source: str) -> Any:
    """Parse one document (YAML, or JSON, which YAML reads too) with Decimal numbers."""
    try:
        return yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise _too_deep(source) from None
    except yaml.YAMLError as yaml_error:
        try:  # JSON that YAML cannot read (e.g. tabs): fall back to the JSON parser.
            return json.loads(text, parse_float=Decimal, object_pairs_hook=_json_object)
        except ValueError:
            pass
        except RecursionError:
            raise _too_deep(source) from None
        mark = getattr(yaml_error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(yaml_error, "problem", None) or str(yaml_error)
        raise DocumentError([f"{where}: not valid YAML or JSON: {problem}"]) from None


def _too_deep(source: str) -> DocumentError:
    return DocumentError(
        [f"{source}: nested more than Python reads (a catalog document is a few levels deep)"]
    )


@dataclass(frozen=True)
class LoadedObject:
    kind: str  # document key: billable_metrics, products, ...
    index: int
    source: str  # file path
    line: int | None
    model: Model

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source

    def describe(self) -> str:
        name = getattr(self.model, "name", None) or getattr(self.model, "id", None)
        label = f" {name!r}" if name else ""
        return f"{self.where}: {self.kind}[{self.index}]{label}"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class found by following `loc` (field names, list indices) from `model`."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Find the BaseModel inside Optional[...] / list[...] / Annotated[...]."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (list, tuple, typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
            if models:
                return models[0]
            if len(inner) != 1:
                return None
            annotation = inner[0]
        else:
            return annotation


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_validation_error(model: type[BaseModel], error: ValidationError) -> list[str]:
    """One line per pydantic error: the field path, the value, what was expected."""
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        path = _loc_text(loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            known = list(parent.model_fields) if parent else []
            hint = suggest(str(loc[-1]), known)
            allowed = f" (known fields: {', '.join(known)})" if known and not hint else ""
            inside = f"in {_loc_text(loc[:-1])!r}: " if loc[:-1] else ""
            problems.append(f"{inside}unknown field {str(loc[-1])!r}{hint}{allowed}")
            continue
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        where = f"field {path!r}: " if path else ""
        value = item.get("input")
        shown = (
            ""
            if kind in ("missing",) or isinstance(value, dict)
            else f" (got {_SHORT.repr(value)})"
        )
        if kind == "missing":
            message = "is required"
        if (
            kind == "string_type"
            and isinstance(value, int | Decimal)
            and not isinstance(value, bool)
        ):
            shown += "; write it in quotes to keep it as text"  # YAML and JSON read 123 as a number
        problems.append(f"{where}{message}{shown}")
    return problems


@dataclass
class Loaded:
    """The valid objects, the problems found, and the ids/names of the invalid objects (so
    references to them are not reported a second time as missing)."""

    objects: list[LoadedObject]
    problems: list[str]
    invalid_refs: dict[str, set[str]]


def load_files(paths: list[Path]) -> Loaded:
    """Read and validate every object of every file, collecting every problem."""
    problems: list[str] = []
    loaded: list[LoadedObject] = []
    invalid: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for path in paths:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            problems.append(f"{source}: no such file")
            continue
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{source}: cannot read: {error}")
            continue
        try:
            document = load_text(text, source)
        except DocumentError as error:
            problems.extend(error.problems)
            continue
        if document is None:
            continue  # an empty document applies nothing
        if not isinstance(document, dict):
            problems.append(
                f"{source}: a catalog document is a mapping with keys {', '.join(KINDS)}; "
                f"got {type(document).__name__}"
            )
            continue
        for key, objects in document.items():
            if key not in KINDS:
                line = getattr(document, "line", None)
                problems.append(
                    f"{source}:{line or 1}: unknown top-level key {key!r}{suggest(str(key), KINDS)}"
                    f" (expected one of: {', '.join(KINDS)})"
                )
                continue
            if objects is None:
                continue
            if not isinstance(objects, list):
                problems.append(f"{source}: {key!r} must be a list of objects")
                continue
            model = KINDS[key]
            for index, raw in enumerate(objects):
                line = getattr(raw, "line", None)
                where = f"{source}:{line}" if line else source
                label = ""
                if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                    label = f" {raw['name']!r}"
                if not isinstance(raw, dict):
                    problems.append(f"{where}: {key}[{index}] must be an object")
                    continue
                try:
                    obj = model.model_validate(raw)
                except ValidationError as error:
                    for problem in format_validation_error(model, error):
                        problems.append(f"{where}: {key}[{index}]{label}: {problem}")
                    invalid[key].update(str(raw[f]) for f in ("id", "name") if raw.get(f))
                    continue
                loaded.append(LoadedObject(key, index, source, line, obj))
    return Loaded(loaded, problems, invalid)
