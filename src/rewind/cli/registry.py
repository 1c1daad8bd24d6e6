"""The command registry: every ``rewind`` command is a name, a one-line help, an example, a
function that declares its arguments and a function that runs it. ``main`` builds the parser from
here, the docs' command reference is generated from here, and a plugin adds a command the same
way rewind's own modules do (:func:`register_command`)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from ..spec import SpecError


@dataclass(frozen=True)
class Command:
    name: str
    help: str                                            # one line, for `rewind --help`
    run: Callable[[argparse.Namespace], int]             # the exit status
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    example: str = ""                                    # a command line, shown by `rewind NAME --help`
    description: str = ""                                # more than the help line (may be a callable's text)
    fields: bool = False                                 # list the spec fields in --help (commands with --set)
    passthrough: bool = False                            # unknown --NAME VALUE pairs go to run as args.extra
    group: str = "rewind"                                # who registered it: rewind, or a plugin's name


COMMANDS: dict[str, Command] = {}


def register_command(name: str, *, help: str, example: str = "", arguments=None, description: str = "",
                     fields: bool = False, passthrough: bool = False, group: str | None = None):
    """Decorator: ``@register_command("hello", help="...", arguments=add_args)`` over ``run(args) -> int``.
    A name that is taken is refused (a plugin cannot replace a command silently)."""
    if not name or not all(c.isalnum() or c == "-" for c in name) or name.startswith("-"):
        raise SpecError(f"register_command: {name!r} is not a command name (letters, digits and -)")

    def deco(run):
        if name in COMMANDS:
            raise SpecError(f"register_command: a command named {name!r} is already registered "
                            f"(by {COMMANDS[name].group})")
        from ..plugins import origin_of

        COMMANDS[name] = Command(name, help, run, arguments, example, description, fields, passthrough,
                                 group or origin_of(run).group)
        return run
    return deco
