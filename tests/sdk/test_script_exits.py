"""How a script's end decides its open runs' status, and what init and log take."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

import prunescope
from tests.sdk.conftest import TOKEN, LiveApi
from tests.sdk.test_sigterm import ROOT, stored


@pytest.mark.parametrize(("ending", "status", "code"), [
    ("sys.exit(3)", "failed", 3), ("sys.exit('fatal: bad data')", "failed", 1), ("sys.exit(0)", "completed", 0),
    ("sys.exit()", "completed", 0), ("pass", "completed", 0),
    ("import threading; t = threading.Thread(target=sys.exit, args=(5,)); t.start(); t.join()", "completed", 0)])
def test_a_script_that_exits_with_runs_open_ends_them_by_its_status(api: LiveApi, tmp_path: Path, ending: str,
                                                                  status: str, code: int) -> None:
    # sys.exit(3) with the run open outside `with` left it `completed` (every run open at exit was).
    name = f"exit-{abs(hash(ending))}"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import prunescope
        run = prunescope.init(name={name!r}, api=sys.argv[1], token=sys.argv[2], dir=sys.argv[3])
        run.log(epoch=1, train_loss=0.5)
        {ending}
    """))
    done = subprocess.run([sys.executable, str(script), api.url, TOKEN, str(tmp_path / "spool")], text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == code, done.stderr
    detail, epochs = stored(api, name)
    assert (detail["status"], epochs) == (status, [1])
    if status == "failed":
        assert "sys.exit(" in detail["error"]


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "htp://127.0.0.1:8000", "http://", "localhost"])
def test_a_malformed_api_url_is_refused_at_init(tmp_path: Path, url: str) -> None:
    # It went offline without a word, spooling for an API it could never reach.
    with pytest.raises(ValueError, match="not an http"):
        prunescope.init(name="bad-url", api=url, token=TOKEN, dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_decimal_and_fraction_are_logged_as_numbers(api: LiveApi, tmp_path: Path) -> None:
    with prunescope.init(name="numbers", api=api.url, token=TOKEN, dir=tmp_path) as run:
        run.log(epoch=1, train_loss=Decimal("1.5"), ratio=Fraction(1, 4), huge=Decimal("1e400"))
        with pytest.raises(TypeError, match="not a number"):
            run.log(epoch=2, label="text")
    with api.http() as http:
        epoch = http.get(f"/api/runs/{run.id}/epochs").json()["items"][0]
    assert epoch["train_loss"] == 1.5
    assert epoch["extra"]["ratio"] == 0.25 and epoch["extra"]["huge"] is None  # inf: stored as null, as a float's


@pytest.mark.parametrize("config", ["notadict", [("lr", 0.1)], 3])
def test_a_config_that_is_not_a_dict_is_refused_by_name(tmp_path: Path, config: object) -> None:
    # "ValueError: dictionary update sequence element #0 has length 1; 2 is required".
    with pytest.raises(TypeError, match="config must be a dict"):
        prunescope.init(name="bad-config", config=config, offline=True, dir=tmp_path)  # type: ignore[arg-type]


def test_a_sys_exit_the_script_caught_does_not_fail_its_runs(api: LiveApi, tmp_path: Path) -> None:
    # argparse's sys.exit(2) caught, then the script went on: its run must not end failed at exit.
    script = tmp_path / "caught.py"
    script.write_text(textwrap.dedent("""
        import argparse, sys
        import prunescope
        run = prunescope.init(name="caught-exit", api=sys.argv[1], token=sys.argv[2], dir=sys.argv[3])
        try:
            argparse.ArgumentParser().parse_args(["--no-such-flag"])
        except SystemExit:
            pass
        run.log(epoch=1, train_loss=0.5)
    """))
    done = subprocess.run([sys.executable, str(script), api.url, TOKEN, str(tmp_path / "spool")], text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr
    detail, epochs = stored(api, "caught-exit")
    assert (detail["status"], epochs) == ("completed", [1])
