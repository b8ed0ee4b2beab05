"""`zoomcal mapping ...`: mapping rules."""

from __future__ import annotations

from pathlib import Path

import typer

from zoomcal.cli.common import console, fail
from zoomcal.errors import ConfigError
from zoomcal.mapping.rules import load_rules

mapping_app = typer.Typer(help="Mapping rules.", no_args_is_help=True)


@mapping_app.command("check")
def mapping_check(file: Path) -> None:
    """Validate a mapping rules file (exit 1 with the reasons when it is not valid)."""
    try:
        rules = load_rules(file)
    except ConfigError as exc:
        fail(str(exc))
    console.print(f"[green]ok[/] {file}: version {rules.version}, conflicts go to the "
                  f"{rules.conflict.policy} side, unsupported recurrences -> {rules.zoom.unsupported_recurrence}")
