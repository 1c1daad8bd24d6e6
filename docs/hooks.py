"""MkDocs hooks: the command reference is generated from rewind's parser (the command registry),
so it never lists a flag by hand."""
from __future__ import annotations

import argparse
import io
from contextlib import redirect_stdout

MARKER = "<!-- commands -->"


def _help(parser: argparse.ArgumentParser) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        parser.print_help()
    return buf.getvalue()


def commands_markdown() -> str:
    from rewind.cli import build_parser, load_commands

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, cmd in load_commands().items():
        p = sub.choices[name]
        p.prog = f"rewind {name}"
        out += [f"## rewind {name}", "", cmd.help[0].upper() + cmd.help[1:] + ".", "",
                "```text", _help(p).rstrip().replace("```", "'''"), "```", ""]
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        return markdown.replace(MARKER, commands_markdown())
    return markdown
