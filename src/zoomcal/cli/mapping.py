"""`zoomcal mapping ...`: mapping rules."""

from __future__ import annotations

from pathlib import Path

import typer

from zoomcal.cli.common import console, fail, print_json
from zoomcal.errors import ConfigError

mapping_app = typer.Typer(help="Mapping rules.", no_args_is_help=True)


@mapping_app.command("check")
def mapping_check(file: Path = typer.Argument(..., help="The rules file (TOML)."),
                  as_json: bool = typer.Option(False, "--json", help="Print the whole merged rules as JSON.")) -> None:
    """Validate a mapping rules file (exit 1 with the reasons when it is not valid)."""
    try:
        from zoomcal.mapping.rules import load_rules

        rules = load_rules(file)
    except ConfigError as exc:
        fail(str(exc))
    if as_json:
        return print_json({"ok": True, "file": str(file), "rules": rules.model_dump(mode="json")})
    console.print(f"[green]ok[/] {file}: version {rules.version}, conflicts go to the "
                  f"{rules.conflict.policy} side, unsupported recurrences -> {rules.zoom.unsupported_recurrence}")
