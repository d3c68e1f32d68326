"""What the commands print around the work: a spinner only on a terminal and only for slow
images, nothing extra when piped or with --quiet, and a weights list that survives a pipe."""

from __future__ import annotations

import io
import time

import pytest
from click.testing import CliRunner
from rich.console import Console

import lalic_cli.cli as cli
from lalic_cli.cli import main
from lalic_cli.progress import DelayedSpinner


def _terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=100), buf


def test_spinner_appears_after_the_delay_and_shows_elapsed_time():
    console, buf = _terminal()
    with DelayedSpinner(console, "encoding big.png", delay=0.05) as spinner:
        time.sleep(0.6)
    assert spinner.shown
    assert "encoding big.png" in buf.getvalue() and "0:00:00" in buf.getvalue()


def test_spinner_says_where_the_work_is():
    """A refinement (``--effort`` 8, 9) updates its step on the spinner's line."""
    console, buf = _terminal()
    with DelayedSpinner(console, "encoding big.png", delay=0.01) as spinner:
        time.sleep(0.2)
        spinner.update("encoding big.png: refining, step 3/40")
        time.sleep(0.3)
    assert "step 3/40" in buf.getvalue()
    with DelayedSpinner(console, "off", enabled=False) as off:
        off.update("nothing")  # a disabled spinner takes updates and shows nothing
    assert "nothing" not in buf.getvalue()


def test_spinner_stays_hidden_for_quick_work_and_when_disabled():
    console, buf = _terminal()
    with DelayedSpinner(console, "quick", delay=5) as quick:
        pass
    with DelayedSpinner(console, "off", delay=0, enabled=False) as off:
        time.sleep(0.2)
    assert not quick.shown and not off.shown and buf.getvalue() == ""


def test_spinner_stops_on_error():
    console, buf = _terminal()
    with pytest.raises(KeyboardInterrupt):
        with DelayedSpinner(console, "interrupted", delay=0.01) as spinner:
            time.sleep(0.3)
            raise KeyboardInterrupt
    assert spinner.shown and not spinner._progress.live.is_started


@pytest.mark.parametrize("terminal,quiet,expected", [(True, False, True), (True, True, False),
                                                     (False, False, False)])
def test_spinner_only_on_a_terminal_without_quiet(monkeypatch, terminal, quiet, expected):
    monkeypatch.setattr(cli, "out", Console(file=io.StringIO(), force_terminal=terminal))
    monkeypatch.setattr(cli, "err", Console(file=io.StringIO(), force_terminal=terminal))
    assert cli._spinner("x", quiet).enabled is expected


def test_quiet_prints_nothing(tiny_checkpoints, sample_png, tmp_path):
    r = CliRunner().invoke(main, ["encode", str(sample_png), "-q", "3", "--quiet"])
    assert r.exit_code == 0 and r.output == ""
    r = CliRunner().invoke(main, ["decode", str(sample_png.with_suffix(".lal")), "-o", str(tmp_path / "x.png"),
                                  "--quiet"])
    assert r.exit_code == 0 and r.output == ""
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "missing.png"), "--quiet"])
    assert r.exit_code == 2 and r.output.startswith("lalic: error:")


def test_weights_list_piped_is_tab_separated(weights_dir):
    r = CliRunner().invoke(main, ["weights", "list"])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].split("\t") == ["name", "kind", "config", "quality", "lambda", "status", "path"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert all(len(row) == 7 for row in rows.values())
    assert rows["lalic-mse-q6"][1:] == ["official", "full", "6", "0.0483", "missing",
                                       str(weights_dir / "lalic-mse-q6.safetensors")]
    assert rows["lalic-small-vr"][3] == "variable" and rows["lalic-small-vr"][5] == "available"
    assert not any(ch in r.output for ch in "┃│━")
