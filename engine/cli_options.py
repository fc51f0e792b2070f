"""Options shared by the CLI modules (light: imported before any command runs)."""

from __future__ import annotations

from collections.abc import Sequence

import typer


def check_format(value: str, allowed: Sequence[str]) -> str:
    """A bad `--format` is a usage error like any bad option value (exit 2, click's message)."""
    if value not in allowed:
        raise typer.BadParameter(
            f"{value!r} is not one of {', '.join(allowed)}", param_hint="--format"
        )
    return value


def home_of(ctx: typer.Context) -> str | None:
    """The `--home` given to `meterql` (click hands the root's `obj` to every subcommand)."""
    return (ctx.obj or {}).get("home")
