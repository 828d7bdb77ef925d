"""Regenerate (or check) every command output shown in README.md.

A fenced block whose info string is ``console`` is a session: each line starting with ``$ ``
is a command run from the repository root, and the lines after it, up to the next command,
are what it prints. ``python docs/render_readme.py`` runs every command and writes its output
into README.md; ``--check`` exits 1 and shows the first difference when README.md is not what
the commands print now. Figures that change from run to run on the same machine (wall-clock
times, events per second) are compared as ``<t>``.

A command may end in ``| head -N`` to show its first N lines (the rest becomes ``...``). A block
whose info string is ``console measured`` (benchmarks: every figure is a timing) is regenerated
by a render but not compared by ``--check``.
Text between ``<!-- include: COMMAND -->`` and ``<!-- end include -->`` is COMMAND's output as
Markdown (the dev-set tables). Only ``clustersim`` and ``python`` commands run; anything else is
refused.

    >>> mask("3 plans in 0.25 s; 1,204 events in 0.03 s (40,133 events/s)")
    '3 plans in <t>; 1,204 events in <t> (<t> events/s)'
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```console( measured)?\n(.*?)^```\n", re.S | re.M)
INCLUDE = re.compile(r"^<!-- include: (.*?) -->\n(.*?)^<!-- end include -->\n", re.S | re.M)
HEAD = re.compile(r"\s*\|\s*head\s+-(?:n\s*)?(\d+)\s*$")
# wall-clock figures: "in 0.25 s", "0.03 s (40,133 events/s)", "elapsed 1.2 s"
VOLATILE = (re.compile(r"(?<=in )\d[\d,]*(?:\.\d+)? s\b"), re.compile(r"\d[\d,]*(?:\.\d+)?(?= events/s)"),
            re.compile(r"(?<=elapsed )\d[\d,]*(?:\.\d+)? s\b"))
ENV = {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb", "PYTHONHASHSEED": "0"}


def mask(text: str) -> str:
    """``text`` with its run-to-run figures replaced by ``<t>``."""
    for rx in VOLATILE:
        text = rx.sub("<t>", text)
    return text


def run(command: str) -> str:
    """What ``command`` prints (stdout then stderr), as a user would see it."""
    m = HEAD.search(command)
    limit = int(m.group(1)) if m else None
    argv = shlex.split(HEAD.sub("", command))
    if not argv or argv[0] not in ("clustersim", "python"):
        raise ValueError(f"README command {command!r}: only clustersim and python commands run here")
    if argv[0] == "clustersim":
        argv = [sys.executable, "-m", "simulator.cli", *argv[1:]]
    elif argv[0] == "python":
        argv[0] = sys.executable
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **ENV})
    lines = (proc.stdout + proc.stderr).rstrip("\n").splitlines()
    lines = [line.rstrip() for line in lines]
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + ["..."]
    return "\n".join(lines) + "\n"


def render_block(body: str) -> str:
    """A console block with every command's output regenerated."""
    out = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append(line + "\n" + run(line[2:]))
    return "".join(out)


def render(text: str, measured: bool = True) -> str:
    """``text`` with every console block regenerated (``measured`` blocks too unless ``measured`` is False)."""
    def one(m):
        if m.group(1) and not measured:
            return m.group(0)
        return "```console" + (m.group(1) or "") + "\n" + render_block(m.group(2)) + "```\n"
    text = BLOCK.sub(one, text)
    return INCLUDE.sub(lambda m: f"<!-- include: {m.group(1)} -->\n{run(m.group(1))}<!-- end include -->\n", text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md differs from what the commands print")
    args = ap.parse_args(argv)
    text = README.read_text()
    new = render(text, measured=not args.check)
    if args.check:
        if mask(new) != mask(text):
            diff = difflib.unified_diff(mask(text).splitlines(), mask(new).splitlines(), "README.md", "rendered",
                                        lineterm="", n=1)
            print("\n".join(list(diff)[:60]))
            return 1
        print(f"README.md: {len(BLOCK.findall(text))} console blocks match")
        return 0
    if new != text:
        tmp = README.with_suffix(".md.tmp")
        tmp.write_text(new)
        tmp.replace(README)
    print(f"README.md: {len(BLOCK.findall(new))} console blocks rendered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
