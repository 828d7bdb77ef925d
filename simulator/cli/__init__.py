"""The ``clustersim`` command line (click). Bad input prints one line naming the field and
the reason and exits with status 2; no tracebacks.

Each command module (estimate, simulate, scenario, cost, export, calibrate, dashboard) adds its
commands to :data:`simulator.cli.app.app` when imported; the app imports the one a command line
names (simulator.cli.app.COMMAND_MODULES), so a command loads only what it uses."""

from __future__ import annotations

import sys

from models.estimate import PlanError
from simulator.cli.app import Exit, app, echo

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns input errors into one clear line."""
    try:
        code = app(args=argv, standalone_mode=False)   # click returns an Exit's status (--help, --version: 0)
    except Exit as e:
        return e.exit_code
    except PlanError as e:
        for msg in e.errors:
            echo(f"error: {msg}", err=True)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as e:
        echo(f"error: {_one_line(e)}", err=True)
        return 2
    except OSError as e:   # a file given on the command line: a folder, no permission, a broken pipe name
        name = e.filename if e.filename is not None else "file"
        echo(f"error: {name}: {e.strerror or e}", err=True)
        return 2
    except RecursionError:   # nested input that a loader did not bound (they refuse deep nesting themselves)
        echo("error: input: nested too deeply", err=True)
        return 2
    except RuntimeError as e:
        if type(e).__name__ != "RanksFailed":   # calibrate/validate's dead ranks; anything else is a bug
            raise
        echo(f"error: {e}", err=True)
        return 1
    except Exception as e:  # click's usage errors (matched by shape)
        if type(e).__name__ == "ValidationError" and hasattr(e, "errors"):   # pydantic, at a loader's boundary
            err = e.errors(include_url=False)[0]
            where = ".".join(str(x) for x in err.get("loc", ())) or "input"
            echo(f"error: {where}: {err.get('msg', e)}", err=True)
            return 2
        if type(e).__name__ in ("YAMLError", "ScannerError", "ParserError", "ComposerError", "ConstructorError"):
            echo(f"error: not valid YAML ({_one_line(e)})", err=True)
            return 2
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            return e.exit_code
        if type(e).__name__ == "Abort":
            return 1
        raise
    return code if isinstance(code, int) else 0


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (KeyError's quotes removed)."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
