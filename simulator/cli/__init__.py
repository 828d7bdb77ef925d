"""The ``clustersim`` command line (typer). Bad input prints one line naming the field and
the reason and exits with status 2; no tracebacks.

Each module below adds its commands to :data:`simulator.cli.app.app` when imported."""

from __future__ import annotations

import sys

import typer

from models.estimate import PlanError
from simulator.cli import calibrate, cost, dashboard, estimate, export, scenario, simulate  # noqa: F401  (registers commands)
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
        typer.echo(f"error: {_one_line(e)}", err=True)
        return 2
    except OSError as e:   # a file given on the command line: a folder, no permission, a broken pipe name
        name = e.filename if e.filename is not None else "file"
        typer.echo(f"error: {name}: {e.strerror or e}", err=True)
        return 2
    except RecursionError:   # nested input that a loader did not bound (they refuse deep nesting themselves)
        typer.echo("error: input: nested too deeply", err=True)
        return 2
    except RuntimeError as e:
        if type(e).__name__ != "RanksFailed":   # calibrate/validate's dead ranks; anything else is a bug
            raise
        typer.echo(f"error: {e}", err=True)
        return 1
    except Exception as e:  # click usage errors (typer may vendor its own click: match by shape)
        if type(e).__name__ == "ValidationError" and hasattr(e, "errors"):   # pydantic, at a loader's boundary
            err = e.errors(include_url=False)[0]
            where = ".".join(str(x) for x in err.get("loc", ())) or "input"
            typer.echo(f"error: {where}: {err.get('msg', e)}", err=True)
            return 2
        if type(e).__name__ in ("YAMLError", "ScannerError", "ParserError", "ComposerError", "ConstructorError"):
            typer.echo(f"error: not valid YAML ({_one_line(e)})", err=True)
            return 2
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            return e.exit_code
        if type(e).__name__ == "Abort":
            return 1
        raise
    return 0


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (KeyError's quotes removed)."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
