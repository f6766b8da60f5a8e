"""The ``epay`` command loads a subcommand's modules only to run that subcommand: building
its parser and ``epay --help`` load none of the operators' and developers' commands (ops,
report, bench), no workflow and none of their store modules, so that ``epay api``,
``epay worker`` and ``epay codec-server`` start without them. Each check runs in a fresh
interpreter, whose ``sys.modules`` says what was imported."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from tests.support import ROOT

# Loaded by ``epay ops``, ``epay report`` or ``epay bench`` only.
ON_RUN_ONLY = ("commands.ops", "commands.report", "tools", "workflows", "store.ops", "store.report")


def loaded_after(code: str) -> set[str]:
    """The modules of ePay's packages loaded after running ``code`` in a new interpreter."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def of(modules: set[str], prefixes: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)}


def test_building_the_parser_loads_no_command_that_is_not_run() -> None:
    loaded = loaded_after(
        "from commands import cli\n"
        "cli.build_parser()\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert "commands.cli" in loaded
    assert of(loaded, ON_RUN_ONLY) == set()


def test_epay_ops_loads_ops_and_not_the_others() -> None:
    loaded = loaded_after(
        "from commands import cli\ntry:\n    cli.main(['ops', 'stuck', '--help'])\n"
        "except SystemExit:\n    pass"
    )
    assert "commands.ops" in loaded
    assert of(loaded, ("commands.report", "tools", "store.report")) == set()


@pytest.mark.parametrize("name", ["ops", "report"])
def test_a_command_listed_before_it_is_loaded_has_the_help_it_has_loaded(name: str) -> None:
    """``epay --help`` lists a command from the registry; its package gives the same line."""
    from commands import cli

    listed = _help_of(cli.build_parser(), name)
    assert listed
    assert listed == _help_of(cli.build_parser(name), name)


def _help_of(parser: argparse.ArgumentParser, name: str) -> str | None:
    """The line ``parser``'s help gives the subcommand ``name``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help
    return None
