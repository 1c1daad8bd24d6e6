"""The command line: ``rewind COMMAND ...``, one module per family of commands (store, train,
lottery, instability, early, data, pretrain, reproduce), each registering its commands in
:mod:`rewind.cli.registry`; ``main`` builds the parser from the registry, calls the command, and
turns failures into one line and an exit status. Commands parse, call the Python API and print.

Exit status: 0 success; 1 the environment failed (disk full, permissions, missing or damaged
dataset files, a damaged store); 2 bad input (refused before anything is written); 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings

from ..spec import SpecError
from .registry import COMMANDS, Command, register_command

FAMILIES = ("store_cmds", "train_cmd", "lottery_cmds", "instability_cmds", "early_cmds", "data_cmds",
            "pretrain_cmds", "reproduce_cmds")


def load_commands() -> dict[str, Command]:
    """rewind's own commands (each module registers its family once); plugins add theirs when loaded."""
    import importlib

    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")
    return COMMANDS


def requested_plugins(argv: list[str]) -> list[str]:
    """The plugins a command line asks for: every --plugin X (or --plugin=X), then the ``plugins``
    list of its --config file. Read before the parser is built: plugins may add commands."""
    out, config = [], None
    for i, a in enumerate(argv):
        if a == "--plugin" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith("--plugin="):
            out.append(a.split("=", 1)[1])
        elif a == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
        elif a.startswith("--config="):
            config = a.split("=", 1)[1]
    if config:
        from ..spec import load_toml

        try:
            listed = load_toml(config).get("plugins", [])
        except SpecError:
            listed = []   # the command reports the config file itself
        if isinstance(listed, str):
            listed = [listed]
        if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            raise SpecError(f"--config {config}: plugins must be a list of module names or file paths")
        out.extend(listed)
    return out


def _plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE|PATH",
                   help="load a plugin (a module or .py file of yours that registers models, datasets, criteria, "
                        "branches, claims or commands; repeatable; also $REWIND_PLUGINS and installed "
                        "rewind.plugins entry points)")


def one_line(message) -> str:
    """A message on one line: characters that are not printable (a newline, a control character
    someone typed into a flag) are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))


class _Parser(argparse.ArgumentParser):
    """argparse, but a refusal is one line (and exit 2) like every other refusal of rewind."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every registered command; with ``only``, that command's arguments alone are
    declared (the others keep their name and help line; ``only=""``: none), so `rewind ls` and
    `rewind --help` build no more than they need."""
    from . import args as common

    commands = load_commands()
    parser = _Parser(prog="rewind", description="Lottery-ticket and early-phase-of-training experiments. "
                                                "`rewind COMMAND --help` shows a command's flags and an example.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for name, cmd in commands.items():
        full = only is None or only == name
        epilog = None
        if full and (cmd.example or cmd.fields):
            epilog = (f"example:\n  {cmd.example}\n" if cmd.example else "") + \
                     ("\n" + common.fields_epilog() if cmd.fields else "")
        description = (cmd.description() if callable(cmd.description) else cmd.description) if full else None
        p = sub.add_parser(name, help=cmd.help, description=(description or cmd.help) if full else None,
                           epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        if full and cmd.arguments is not None:
            cmd.arguments(p)
        if full:
            _plugin_arg(p)
    return parser


def _command_in(argv: list[str]) -> str:
    """The command named by ``argv`` ("" for none: `rewind --help`, or a name that is not one)."""
    return argv[0] if argv and argv[0] in load_commands() else ""


def _os_error(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    what = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        hint = "free some space and run the same command again (finished work is kept, nothing partial was left)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a --root (or --data-root) you can write to, or fix the permissions"
    elif e.errno == errno.EISDIR:
        hint = "a directory stands where a file is expected"
    elif e.errno == errno.ENOTDIR:
        hint = "a file stands where a directory is expected"
    else:
        hint = "check the path and run the same command again"
    return f"{where}{what}; {hint}"


def _one_line_warnings() -> None:
    """rewind's warnings as one line each on stderr, once per message."""
    from ..errors import RewindWarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"rewind: warning: {one_line(message)}", file=sys.stderr)

    warnings.showwarning = show
    warnings.simplefilter("default", RewindWarning)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (see the module's docstring)."""
    from ..errors import DataError
    from ..host import silent_rank
    from ..store.io import CheckpointError
    from ..store.records import RecordDamaged
    from . import args as common

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        from ..plugins import load_plugins

        load_plugins(requested_plugins(argv))
    except SpecError as e:
        print(f"rewind: error: {one_line(e)}", file=sys.stderr)
        return 2
    parser = build_parser(only=_command_in(argv))
    args, extra = parser.parse_known_args(argv)
    cmd = COMMANDS[args.command]
    if extra and not cmd.passthrough:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    quiet_rank = silent_rank()  # one rank of a torchrun world speaks
    if quiet_rank:
        sys.stdout = open(os.devnull, "w")
    with warnings.catch_warnings():
        _one_line_warnings()
        if quiet_rank:
            warnings.simplefilter("ignore")
        try:
            common.check_outputs(args)
            if getattr(args, "ddp", None) is not None:
                from .train_cmd import launch_ddp

                code = launch_ddp(args, argv)
            else:
                code = cmd.run(args)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
        except BrokenPipeError:
            # the reader went away (| head): stop quietly, and keep Python from complaining at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except (DataError, RecordDamaged) as e:  # a damaged run or record of the store
            print(f"rewind {args.command}: error: {one_line(e)}", file=sys.stderr)
            return 1
        except (SpecError, CheckpointError, ValueError) as e:
            print(f"rewind {args.command}: error: {one_line(e)}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"rewind {args.command}: error: {one_line(_os_error(e))}", file=sys.stderr)
            return 1
        except MemoryError:
            print(f"rewind {args.command}: error: out of memory; use a smaller model, batch or population",
                  file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted; the run resumes from its last resume point when asked again", file=sys.stderr)
            return 130


__all__ = ["COMMANDS", "Command", "build_parser", "load_commands", "main", "one_line", "register_command"]

if __name__ == "__main__":
    sys.exit(main())
