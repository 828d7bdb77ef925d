"""The README's console blocks are what the commands print (docs/render_readme.py)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _renderer():
    spec = importlib.util.spec_from_file_location("render_readme", ROOT / "docs" / "render_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mask_hides_only_wall_clock_figures():
    r = _renderer()
    assert r.mask("17 plans in 0.31 s; 2 invalid") == "17 plans in <t>; 2 invalid"
    assert r.mask("iteration time 18.752 s") == "iteration time 18.752 s"


def test_only_project_commands_run():
    with pytest.raises(ValueError, match="only clustersim and python"):
        _renderer().run("rm -rf /tmp/x")


@pytest.mark.slow
def test_readme_outputs_are_what_the_commands_print(capsys):
    """Fails when a README example drifts from the code: rerun `python docs/render_readme.py`."""
    assert _renderer().main(["--check"]) == 0, capsys.readouterr().out
