"""The ``clustersim`` command line (typer). Bad input prints one line naming the field and
the reason and exits with status 2; no tracebacks.

Each module below adds its commands to :data:`simulator.cli.app.app` when imported."""

from __future__ import annotations

import sys

import typer

from models.estimate import PlanError
from simulator.cli import calibrate, cost, dashboard, estimate, scenario, simulate  # noqa: F401  (registers commands)
from simulator.cli.app import app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns input errors into one clear line."""
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except PlanError as e:
        for msg in e.errors:
            typer.echo(f"error: {msg}", err=True)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except RuntimeError as e:
        if type(e).__name__ != "RanksFailed":   # calibrate/validate's dead ranks; anything else is a bug
            raise
        typer.echo(f"error: {e}", err=True)
        return 1
    except Exception as e:  # click usage errors (typer may vendor its own click: match by shape)
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            return e.exit_code
        if type(e).__name__ == "Abort":
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
