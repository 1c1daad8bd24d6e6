"""Every JSON record of the store, read defensively and checked against a schema.

A record that does not read back as the schema says (not UTF-8, not JSON, nested too deeply for
the parser, a missing key, a value of the wrong type, a rewind step that does not parse) is
damage: :func:`read_record` raises :class:`RecordDamaged` naming the file and what is wrong, in
one line, never a traceback. The readers (``train``, ``ls``, ``results``, ``report``, ...) and
``rewind verify`` use the same schemas, so whatever a command cannot read, ``verify`` reports.

A schema is a dict of keys to what their value must be: a type or a tuple of types (``int``
excludes ``bool``; ``float`` accepts ints), ``ListOf(item)``, ``DictOf(value)``, a nested schema,
or a :class:`Check` (a function that returns a problem or None). A key ending in ``?`` may be
missing. Keys the schema does not name are allowed (records grow).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .io import CheckpointError


class RecordDamaged(CheckpointError):
    """A record of the store that does not read back as its schema says."""


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class DictOf:
    value: Any


@dataclass(frozen=True)
class Check:
    """A value checked by a function returning a problem (str) or None."""

    fn: Callable[[Any], str | None]
    what: str


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
          list: "a list", type(None): "null"}


def _is(value: Any, tp: type) -> bool:
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


def problem(value: Any, schema: Any, where: str = "") -> str | None:
    """What is wrong with ``value`` under ``schema`` (None when it fits)."""
    at = where or "the record"
    if isinstance(schema, Check):
        why = schema.fn(value)
        return None if why is None else f"{at}: {why}"
    if isinstance(schema, type) or (isinstance(schema, tuple) and all(isinstance(t, type) for t in schema)):
        types = schema if isinstance(schema, tuple) else (schema,)
        if any(_is(value, t) for t in types):
            return None
        return f"{at} must be {' or '.join(_NAMES.get(t, t.__name__) for t in types)}, not {_json_type(value)}"
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return f"{at} must be a list, not {_json_type(value)}"
        for i, item in enumerate(value):
            why = problem(item, schema.item, f"{where}[{i}]")
            if why:
                return why
        return None
    if isinstance(schema, DictOf):
        if not isinstance(value, dict):
            return f"{at} must be an object, not {_json_type(value)}"
        for k, item in value.items():
            why = problem(item, schema.value, f"{where}.{k}" if where else k)
            if why:
                return why
        return None
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return f"{at} must be an object, not {_json_type(value)}"
        for key, sub in schema.items():
            optional = key.endswith("?")
            name = key[:-1] if optional else key
            if name not in value:
                if optional:
                    continue
                return f"{at} has no {name!r}" if where else f"no {name!r}"
            why = problem(value[name], sub, f"{where}.{name}" if where else name)
            if why:
                return why
        return None
    raise TypeError(f"not a schema: {schema!r}")


def _json_type(value: Any) -> str:
    for tp in (bool, int, float, str, list, dict, type(None)):
        if isinstance(value, tp):
            return _NAMES[tp]
    return type(value).__name__


def parse_json(data: bytes) -> Any:
    """JSON from bytes; a ValueError for anything that is not (RecursionError included: a record
    of 200,000 nested arrays must read as damage, not crash the reader)."""
    try:
        return json.loads(data.decode())
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise ValueError("nested too deeply to be a record") from None


def read_record(path: str | Path, schema: Any, what: str) -> dict:
    """The record at ``path``, checked against ``schema``; RecordDamaged names ``what`` (e.g.
    "study 1847e5b6..."), the file and the problem. FileNotFoundError passes through."""
    path = Path(path)
    data = path.read_bytes()
    try:
        doc = parse_json(data)
    except ValueError as e:
        raise RecordDamaged(f"{what}: {path} is damaged ({e})") from None
    why = problem(doc, schema)
    if why:
        raise RecordDamaged(f"{what}: {path} is damaged ({why})")
    return doc


def _step(value: Any) -> str | None:
    from ..step import Step

    if not isinstance(value, str):
        return f"must be a step such as 200it, not {_json_type(value)}"
    try:
        Step.parse(value)
    except ValueError as e:
        return f"{value!r} is not a step ({e})"
    return None


def _spec(value: Any) -> str | None:
    from ..spec import Spec, SpecError

    try:
        Spec.from_dict(value)
    except (SpecError, TypeError, ValueError) as e:
        return f"not a spec ({e})"
    return None


STEP = Check(_step, "a step")
SPEC = Check(_spec, "a spec")
NUMBER = float
OPTIONAL_STR = (str, type(None))

# a run's spec.json: the spec (checked when the run trains), its key, and where it starts
RUN_SPEC = {"spec": dict, "key": str, "start?": dict, "engine?": str}
# meta.json: how it was asked for (kind, preset, member) and the labels of its study
RUN_META = {"kind?": OPTIONAL_STR, "preset?": OPTIONAL_STR, "member?": int}
_FILE = {"bytes": int, "sha256": str}
# DONE: the run's record (train/setup.finish_run)
RUN_RECORD = {"iterations": int, "final": DictOf((float, type(None))), "engine?": str, "status?": str,
              "format?": str, "files?": DictOf(_FILE), "record_sha256?": str, "start?": int,
              "threads?": (int, type(None)), "device?": str, "diverged_at?": int, "ddp?": dict}
STUDY = {"key": str, "spec": SPEC, "preset?": OPTIONAL_STR, "rewind_steps": ListOf(STEP), "levels": int,
         "replicates": int, "branches": list, "runs": DictOf(dict), "instability?": DictOf(dict)}
INSTABILITY_SETTINGS = {"a": str, "b": str, "points": int, "bn_reset": bool, "bn_batches": int}
_SEEDS = {"seeds": {"init": int}}
LINEAR_META = {"spec": {"train": dict, "seeds": {"init": int}}, "preset?": OPTIONAL_STR, "replicate?": int,
               "options?": dict, "linear_model?": str}
SCORES_META = {"key": str, "spec": _SEEDS, "preset?": OPTIONAL_STR, "method": str, "at": str,
               "at_iterations": int, "replicates": int}
CLAIM_RESULT = {"claim": str, "verdict": str, "replicates": int,
                "tests": ListOf({"test": str, "verdict": str, "mean": (float, type(None)),
                                 "low": (float, type(None)), "high": (float, type(None)), "n": int})}


def read_table(path: str | Path, what: str, columns: tuple[str, ...] = ()):
    """A CSV table of the store (pandas), with ``columns``; RecordDamaged names ``what`` and the
    file when it does not parse or lacks a column. FileNotFoundError passes through."""
    import io

    import pandas as pd

    path = Path(path)
    data = path.read_bytes()
    try:
        df = pd.read_csv(io.StringIO(data.decode()))
    except UnicodeDecodeError:
        raise RecordDamaged(f"{what}: {path} is damaged (not UTF-8 text)") from None
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RecordDamaged(f"{what}: {path} is damaged (not a CSV table: {first})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RecordDamaged(f"{what}: {path} is damaged (no column {missing[0]!r})")
    return df
MASKS_META = {"key": str, "studies": ListOf(str)}
