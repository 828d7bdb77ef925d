"""Writing results safely, and strict JSON.

:func:`write_output` is the one way a command writes a file. It

- refuses to replace an input of the run (the scenario, a model config.json, a runs file, a
  profile): files are compared by ``(st_dev, st_ino)``, so a hard link or a symlink to an input
  is caught, not only the same name;
- refuses to replace an existing file that is not an earlier clustersim output of the same
  kind, unless ``force`` (``--force``) is given; an earlier output of that kind is replaced, so
  re-running a command works;
- writes to a temporary file in the target's folder and renames it into place
  (:func:`os.replace`), so an interrupted run leaves the old file whole;
- says in one ``ValueError`` (``<flag>: <path>: <reason>``) when the path is a folder, lies
  under a file, or cannot be written.

How an earlier output is recognised (only the first :data:`MAX_SNIFF_BYTES` of a file are read):

- JSON written by clustersim: an object whose first key is ``"clustersim_output"`` with the
  kind as its value (``{"clustersim_output": "estimate", ...}``); scenario results (``run -o
  x.json``): a list of objects whose first key is ``"scenario"`` and which have ``"plan_id"``;
  Chrome/Perfetto traces (kind ``trace``): an object with a ``"traceEvents"`` key (Chrome-trace
  shape; the trace's ``otherData.clustersim_output`` is set too).
- CSV: the header row starts with the first column of that kind and holds all of its columns
  (:data:`CSV_HEADERS`).
- Parquet: the ``PAR1`` magic, and the kind's column names in the file's footer.
- YAML profiles (``calibrate -o``): a ``clustersim_output: profile`` line, or the profile's
  top-level keys ``device:`` and ``peak_flops_per_s:``.

:func:`strict_json` is ``json.dumps`` with ``allow_nan=False``: NaN and infinities become
``null`` (so ``--json`` output is always valid JSON), numpy scalars and arrays plain numbers
and lists.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

MARKER = "clustersim_output"
MAX_SNIFF_BYTES = 64 * 1024
# JSON files larger than this are not parsed to recognise them (a trace of a bounded simulation is smaller)
MAX_JSON_SNIFF_BYTES = 256 << 20
# Columns of each tabular kind (CSV header row, Parquet footer): the first one first, the others anywhere.
CSV_HEADERS = {
    "results": ("scenario", "source", "index", "name", "rank", "plan_id"),
    "search": ("rank", "plan_id", "step_time_s"),
    "published": ("id", "reliability", "group"),
    "timeline": ("rank", "stream", "op", "kind", "start_s", "end_s"),
}


def _stat(p: Path):
    try:
        return os.stat(p)
    except OSError:
        return None


def _same_file(a: Path, b: Path) -> bool:
    sa, sb = _stat(a), _stat(b)
    return sa is not None and sb is not None and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def input_files(*candidates) -> list[Path]:
    """The existing files among ``candidates`` (paths, or model names: a preset name is no file, a
    folder or Hub id stands for its config.json); None entries are skipped."""
    out = []
    for c in candidates:
        if c is None:
            continue
        p = Path(str(c)).expanduser()
        if _stat(p) is not None and not p.is_dir():
            out.append(p)
            continue
        if isinstance(c, str) and ("/" in c or c.endswith(".json")):
            from models.hf_config import find_hf_config
            try:
                out.append(find_hf_config(c))
            except (ValueError, OSError):
                pass
    return out


def is_output_of(path: Path, kind: str) -> bool:
    """Whether ``path`` holds an earlier clustersim output of ``kind`` (see the module docstring)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(MAX_SNIFF_BYTES)
    except OSError:
        return False
    suffix = path.suffix.lower()
    if suffix == ".parquet" or head.startswith(b"PAR1"):
        return _parquet_of(path, kind, st.st_size)
    if suffix in (".yaml", ".yml"):
        text = head.decode("utf-8", "replace")
        return kind == "profile" and (re.search(rf"^{MARKER}: *{kind}\s*$", text, re.M) is not None or
                                      all(re.search(rf"^{k}:", text, re.M) for k in ("device", "peak_flops_per_s")))
    stripped = head.lstrip()
    if stripped.startswith((b"{", b"[")):
        return _json_of(path, kind, st.st_size)
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().replace('"', "").split(",")
    cols = CSV_HEADERS.get(kind)
    return bool(cols) and first[0] == cols[0] and set(cols) <= set(first)


def _json_of(path: Path, kind: str, size: int) -> bool:
    if size > MAX_JSON_SNIFF_BYTES:
        return False
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError, OSError):
        return False
    if isinstance(data, dict):
        if kind == "trace":
            return isinstance(data.get("traceEvents"), list)
        return next(iter(data), None) == MARKER and data[MARKER] == kind
    if isinstance(data, list) and kind == "results":
        return bool(data) and isinstance(data[0], dict) and next(iter(data[0]), None) == "scenario" \
            and "plan_id" in data[0]
    return False


def _parquet_of(path: Path, kind: str, size: int) -> bool:
    cols = CSV_HEADERS.get(kind)
    if not cols:
        return False
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PAR1":
                return False
            f.seek(max(0, size - MAX_SNIFF_BYTES))
            tail = f.read()
    except OSError:
        return False
    return tail.endswith(b"PAR1") and all(c.encode() in tail for c in cols)


def check_output_path(path: str | Path, kind: str, inputs: Iterable = (), force: bool = False,
                      flag: str = "output") -> Path:
    """The path to write ``kind`` to, after the checks of :func:`write_output` (made before the work,
    so a long run does not end in a refusal); ValueError ``flag: path: reason`` otherwise."""
    p = Path(path).expanduser()
    if str(path) in ("", "-"):
        raise ValueError(f"{flag}: give a file name")
    if p.is_dir():
        raise ValueError(f"{flag}: {p}: is a folder; give a file name")
    for parent in p.parents:
        if _stat(parent) is not None:
            if not parent.is_dir():
                raise ValueError(f"{flag}: {p}: {parent} is a file, not a folder")
            break
    for q in inputs:
        if q is not None and (_same_file(p, Path(q)) or p.resolve() == Path(q).resolve()):
            raise ValueError(f"{flag}: {p} is an input of this run ({q}); choose another name")
    if _stat(p) is not None or p.is_symlink():
        if not force and not is_output_of(p, kind):
            raise ValueError(f"{flag}: {p} exists and is not an earlier clustersim {kind} output; "
                             "choose another name, or give --force to replace it")
    return p


def write_output(path: str | Path, data_or_writer: str | bytes | Callable[[Path], object], kind: str,
                 inputs: Iterable = (), force: bool = False, flag: str = "output") -> Path:
    """Write ``data_or_writer`` (text, bytes, or a function that writes the file at the path it is
    given) to ``path`` through a temporary file renamed into place; see the module docstring for
    what is refused. Returns the path written."""
    p = check_output_path(path, kind, inputs, force, flag)
    target = Path(os.path.realpath(p)) if p.is_symlink() else p  # write through a symlink, keep the link
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{flag}: {p}: cannot create the folder ({e.strerror})") from None
    old = _stat(target)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise ValueError(f"{flag}: {p}: cannot write there ({e.strerror})") from None
    tmp = Path(tmp_name)
    try:
        if callable(data_or_writer):
            os.close(fd)
            data_or_writer(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data_or_writer.encode("utf-8") if isinstance(data_or_writer, str) else data_or_writer)
        mode = stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as e:
        raise ValueError(f"{flag}: {p}: cannot write ({e.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------ JSON

def finite(obj):
    """``obj`` with NaN and infinities replaced by None, numpy values by Python ones (recursively)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, str) else k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return obj
    if isinstance(obj, np.ndarray):
        return finite(obj.tolist())
    if isinstance(obj, np.generic):
        return finite(obj.item())
    return obj


def _default(o):
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return finite(o.item())
    if isinstance(o, (set, frozenset)):
        return sorted(finite(list(o)), key=str)
    return str(o)


def strict_json(obj, indent: int | None = 2, **kw) -> str:
    """``json.dumps(obj)`` that is always valid JSON: NaN / inf become null (``allow_nan=False``).

    >>> strict_json({"a": float("nan"), "b": [1.0, float("inf")]}, indent=None)
    '{"a": null, "b": [1.0, null]}'
    """
    return json.dumps(finite(obj), indent=indent, allow_nan=False, default=_default, **kw)


def output_json(obj: dict, kind: str) -> str:
    """The text of a JSON output file of ``kind``: the marker key first, then ``obj`` (strict JSON)."""
    return strict_json({MARKER: kind, **{k: v for k, v in obj.items() if k != MARKER}}) + "\n"


__all__ = ["write_output", "check_output_path", "is_output_of", "input_files", "strict_json", "output_json",
           "finite", "MARKER"]
