"""The one --json convention of every command that emits a JSON document (train, eval, info and
every bench command): bare `--json` prints the document on stdout and sends everything else
(logs, progress, tables) to stderr or nowhere; `--json-file PATH` writes it to PATH atomically
(temporary file + rename). Both may be given."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

JSON_FLAG = typer.Option(False, "--json", help="Print the JSON document on stdout (logs go to stderr).")
JSON_FILE = typer.Option(None, "--json-file", help="Write the JSON document to this file (atomically).",
                         dir_okay=False)


def emit_json(doc: Any, as_json: bool, json_file: Optional[Path]) -> None:
    text = json.dumps(doc, indent=2) + "\n"
    if json_file is not None:
        from bigmodel._io import write_text

        write_text(json_file, text)
    if as_json:
        sys.stdout.write(text)
        sys.stdout.flush()


def _old_target(value: str) -> bool:
    return value == "-" or value.endswith(".json") or "/" in value


class OldJsonSpelling:
    """Click group mixin: the bench commands' old `--json FILE` (and `--json -` for stdout) keep
    working for one release, rewritten to `--json-file FILE` (and `--json`) with a deprecation
    message on stderr. Only a value that looks like a file (ends in .json, has a /, or is -) is
    taken as the old spelling, so `bench model cnn --json` and `--json --csv x` are not."""

    def parse_args(self, ctx, args):
        out, i = [], 0
        while i < len(args):
            a = args[i]
            value = a.split("=", 1)[1] if a.startswith("--json=") else None
            if value is None and a == "--json" and i + 1 < len(args) and _old_target(args[i + 1]):
                value, i = args[i + 1], i + 1
            if value is None:
                out.append(a)
            else:
                new = ["--json"] if value == "-" else ["--json-file", value]
                sys.stderr.write(f"warning: `--json {value}` is deprecated and goes in the next release; use "
                                 f"`{' '.join(new)}` (bare --json prints the JSON on stdout)\n")
                out += new
            i += 1
        return super().parse_args(ctx, out)
