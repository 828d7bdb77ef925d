"""`clustersim ui`: start the Streamlit dashboard (the Streamlit script lives in ui/app.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

from simulator.cli.app import Exit, Option, app, echo

APP_PATH = Path(__file__).resolve().parents[2] / "ui" / "app.py"  # the Streamlit script


def ui_command(argv_extra: list[str] | None = None, port: int = 8501, address: str = "127.0.0.1",
               headless: bool = False) -> list[str]:
    """The command line that runs the dashboard with this interpreter's streamlit."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_PATH), "--server.port", str(port),
           "--server.address", address, "--server.headless", str(headless).lower(),
           "--browser.gatherUsageStats", "false",
           # no "Deploy" button or developer menu: the dashboard is a tool, not an app to publish
           "--client.toolbarMode", "minimal"]
    return cmd + list(argv_extra or [])


@app.command("ui")
def ui_cmd(port: Annotated[int, Option("--port", help="port to serve on")] = 8501,
           address: Annotated[str, Option("--address",
                                                help="address to bind (0.0.0.0 for all)")] = "127.0.0.1",
           headless: Annotated[bool, Option("--headless/--browser",
                                                  help="do not open a browser window")] = False,
           dry_run: Annotated[bool, Option("--dry-run",
                                                 help="print the command instead of running it")] = False
           ) -> None:
    """Start the Streamlit dashboard that compares plans (Ctrl-C stops it)."""
    if not 0 < port < 65536:
        raise ValueError(f"port: must be in 1-65535, got {port}")
    cmd = ui_command(port=port, address=address, headless=headless)
    if dry_run:
        echo(" ".join(cmd))
        return
    echo(f"clustersim dashboard on http://{address}:{port} (Ctrl-C to stop)", err=True)
    raise Exit(run_streamlit(cmd))


def run_streamlit(cmd: list[str]) -> int:
    """Run the dashboard server; SIGTERM and Ctrl-C stop it (and wait for it) instead of orphaning it."""
    proc = subprocess.Popen(cmd)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return 0 if proc.wait() in (0, -signal.SIGTERM) else 1
    finally:
        signal.signal(signal.SIGTERM, previous)
