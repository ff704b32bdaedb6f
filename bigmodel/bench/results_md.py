"""Regenerating benchmarks/RESULTS.md from a suite run (`bigmodel bench all --results FILE.md`).

Only generated blocks are rewritten, each between its markers

    <!-- bench:begin NAME -->
    ...generated...
    <!-- bench:end NAME -->

and everything outside the markers (the hand-written prose) is kept byte for byte. A block
whose markers are missing is appended, markers included, under a "Generated suite results"
heading at the end. Rewriting with the same blocks gives the same file (idempotent).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

GENERATED_HEADING = "## Generated suite results"


def begin(name: str) -> str:
    return f"<!-- bench:begin {name} -->"


def end(name: str) -> str:
    return f"<!-- bench:end {name} -->"


class ResultsFileError(ValueError):
    """Broken markers (a begin without its end, or twice the same block)."""


def update_blocks(text: str, blocks: Mapping[str, str]) -> str:
    """`text` with the content between each NAME's markers replaced by blocks[NAME]."""
    missing = []
    for name, content in blocks.items():
        body = content.strip("\n") + "\n"
        pat = re.compile(re.escape(begin(name)) + r"\n?(.*?)" + re.escape(end(name)), re.S)
        found = pat.findall(text)
        if len(found) > 1:
            raise ResultsFileError(f"block {name!r} appears {len(found)} times")
        if not found:
            if begin(name) in text or end(name) in text:
                raise ResultsFileError(f"block {name!r}: {begin(name)!r} and {end(name)!r} must both be present, "
                                       "in that order")
            missing.append((name, body))
            continue
        text = pat.sub(lambda _m: f"{begin(name)}\n{body}{end(name)}", text, count=1)
    if missing:
        if GENERATED_HEADING not in text:
            text = text.rstrip("\n") + f"\n\n{GENERATED_HEADING}\n"
        for name, body in missing:
            text = text.rstrip("\n") + f"\n\n{begin(name)}\n{body}{end(name)}\n"
    return text


def environment_block(env: dict[str, Any], command: str) -> str:
    return (f"Command: `{command}`  \n"
            f"Machine: {env.get('cpu')}, {env.get('cores')} cores; {env.get('threads')} threads; ISA path "
            f"{env.get('isa')}; torch {env.get('torch')}; bigmodel {env.get('bigmodel')}"
            + (f" (commit {env['git_commit']})" if env.get("git_commit") else "") + f"; {env.get('date')}\n")


def family_block(results: Sequence, units: Sequence[str]) -> str:
    """A Markdown table of one family's results (and, for models, their breakdowns)."""
    from .report import markdown_table

    return markdown_table(results, units)
