"""Smoke tests of the ``hf-skmm`` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hf_skmm import __version__
from hf_skmm.cli.main import COMMANDS, build_parser, main


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_skmm.cli.main", *args], capture_output=True, text=True)


def test_version():
    out = _cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"hf-skmm {__version__}"


def test_help_lists_every_command():
    out = _cli("--help")
    assert out.returncode == 0
    assert "usage: hf-skmm" in out.stdout
    for name in COMMANDS:
        assert name in out.stdout


def test_every_command_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert name in capsys.readouterr().out


def test_unknown_command_fails():
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["no-such-command"])
    assert exit_info.value.code != 0
