"""Plugins: a researcher's own models, datasets, pruning criteria, branches, alterations, claims
and commands, in a module or file of theirs, registered with rewind's public ``register_*``
functions, with no edit to rewind.

Where plugins come from (all of them, in this order; each loaded once per process):

- ``--plugin MODULE|PATH`` on any command (repeatable), or ``plugins = [...]`` in a TOML config;
- ``REWIND_PLUGINS``: module names or file paths separated by commas;
- installed packages that advertise the entry-point group ``rewind.plugins`` (as pytest does):
  ``[project.entry-points."rewind.plugins"] name = "package.module"``.

Every worker (processes, Ray tasks, torchrun ranks) loads the same plugins. A plugin that fails
to import, or registers a name that is taken, is refused in one line naming it (exit 2).

What a plugin's code does is part of what names its runs: a model, dataset, criterion or
alteration registered outside rewind carries the SHA-256 of the file that defines it (and the
version of the package it was installed from), and a spec that uses it has that digest in its
canonical form, so every key made from the spec changes when the file changes (spec.identity).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .spec import SpecError

ENTRY_POINT_GROUP = "rewind.plugins"


class PluginError(SpecError):
    """A plugin that cannot be loaded: it fails to import, or registers a name that is taken."""


@dataclass(frozen=True)
class Origin:
    """Who registered something: ``group`` is rewind, a plugin's name, a module's name, or __main__
    (a script, a notebook, python -c); ``digest`` names its code (empty for rewind's own)."""

    group: str
    digest: str = ""


_LOADED: dict[str, str] = {}      # plugin (as given) -> its name
_LOADING: list[str] = []          # the plugin being imported (registrations are credited to it)
_VERSIONS: dict[str, str] = {}    # plugin name -> its distribution's version (entry points)


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def origin_of(fn) -> Origin:
    """The origin of a registered function: rewind's own code is not digested (a store assumes
    one version of rewind); anything else is, by the file that defines it (or, in __main__ without
    a file, by its source or its compiled code)."""
    module = getattr(fn, "__module__", "") or ""
    if module == "rewind" or module.startswith("rewind."):
        return Origin("rewind")
    group = _LOADING[-1] if _LOADING else module
    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        path = None
    if path and os.path.isfile(path) and module != "__main__":
        digest = _file_digest(path)
    else:
        try:
            text = inspect.getsource(fn).encode()
        except (OSError, TypeError):
            code = getattr(fn, "__code__", None)
            text = repr((code.co_code, code.co_consts)).encode() if code else repr(fn).encode()
        digest = hashlib.sha256(text).hexdigest()
    version = _VERSIONS.get(group)
    if version:
        digest = hashlib.sha256(f"{digest}|{version}".encode()).hexdigest()
    return Origin(group, digest[:16])


@contextmanager
def _crediting(name: str):
    _LOADING.append(name)
    try:
        yield
    finally:
        _LOADING.pop()


def _import(item: str):
    """A module name, or a path to a .py file (imported under a name made from its path)."""
    if item.endswith(".py") or os.sep in item or "/" in item:
        path = Path(item).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"plugin {item}: no such file")
        name = f"rewind_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    return importlib.import_module(item)


def _load_one(item: str, name: str) -> None:
    if item in _LOADED:
        return
    with _crediting(name):
        try:
            _import(item)
        except PluginError:
            raise
        except SpecError as e:   # a name already registered, or bad registration arguments
            raise PluginError(f"plugin {name}: {e}") from None
        except Exception as e:  # noqa: BLE001 - whatever the plugin raised, said in one line
            first = (str(e).strip().splitlines() or [""])[0]
            raise PluginError(f"plugin {name}: failed to import ({type(e).__name__}: {first})") from None
    _LOADED[item] = name


def _name_of(item: str) -> str:
    """A plugin's name: its module's, or for a file its stem (a package's __init__.py: the folder's)."""
    if not item.endswith(".py"):
        return item
    path = Path(item)
    return path.parent.name if path.stem == "__init__" else path.stem


def requested(extra=()) -> list[str]:
    """The plugins asked for: ``extra`` (--plugin, a config's plugins) then $REWIND_PLUGINS."""
    env = [p.strip() for p in os.environ.get("REWIND_PLUGINS", "").split(",") if p.strip()]
    out = []
    for item in [*extra, *env]:
        if item not in out:
            out.append(item)
    return out


def load_plugins(extra=(), entry_points: bool = True, export: bool = True) -> list[str]:
    """Load the plugins asked for (``extra``, $REWIND_PLUGINS) and, with ``entry_points``, those
    installed packages advertise; returns what was asked for explicitly. With ``export`` the
    explicit ones are put in $REWIND_PLUGINS, so that worker processes load them too."""
    items = requested(extra)
    for item in items:
        _load_one(item, _name_of(item))
    if entry_points:
        from importlib.metadata import entry_points as eps

        for ep in eps(group=ENTRY_POINT_GROUP):
            if ep.value in _LOADED:
                continue
            dist = getattr(ep, "dist", None)
            if dist is not None:
                _VERSIONS[ep.name] = f"{dist.metadata['Name']}=={dist.version}"
            _load_one(ep.value.split(":")[0], ep.name)
    if export and items:
        os.environ["REWIND_PLUGINS"] = ",".join(items)
    return items


def loaded() -> dict[str, str]:
    """What this process has loaded: {module or path as given: plugin name}."""
    return dict(_LOADED)
