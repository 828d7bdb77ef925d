"""Collection rules for the doctests of every package (pytest runs with --doctest-modules over
models/, simulator/ and ui/ as well as tests/).

- Streamlit page scripts run the page when imported (``st.set_page_config``, widgets): the
  dashboard's entry ``ui/app.py`` and its pages ``ui/views/*.py`` are never imported for
  doctests; tests/test_ui_app.py runs them through streamlit's AppTest instead.
- Modules that import PyTorch at module level (the calibration microbenchmarks and the small
  GPT) are skipped where torch is not installed, so a machine without the ``torch`` extra still
  collects cleanly; with torch their doctests run like any other.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent
HAVE_TORCH = importlib.util.find_spec("torch") is not None

collect_ignore = ["ui/app.py"]
collect_ignore_glob = ["ui/views/*"]

# `import torch` / `from torch... import` at the start of a line: a module-level import
_TORCH_IMPORT = re.compile(r"^(?:import torch\b|from torch\b)", re.MULTILINE)


def _imports_torch_at_module_level(path: Path) -> bool:
    try:
        return bool(_TORCH_IMPORT.search(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


def pytest_ignore_collect(collection_path: Path, config):
    """Without torch, leave out the package modules that cannot be imported (tests/ modules guard
    themselves with pytest.importorskip and report the skip)."""
    if HAVE_TORCH or collection_path.suffix != ".py":
        return None
    try:
        rel = collection_path.resolve().relative_to(ROOT)
    except ValueError:
        return None
    if rel.parts[0] in ("models", "simulator", "ui") and _imports_torch_at_module_level(collection_path):
        return True
    return None
