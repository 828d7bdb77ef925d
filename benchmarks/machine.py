"""The machine line every benchmark prints first (the README quotes figures with it)."""

from __future__ import annotations

import os
import platform


def machine(extra: str = "") -> str:
    """The CPU model, architecture, core count, OS and Python of this run (``extra`` appended)."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    line = (f"{cpu or 'unknown CPU'} ({platform.machine()}), {os.cpu_count()} cores, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")
    return f"{line}, {extra}" if extra else line
