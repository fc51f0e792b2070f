"""Options shared by the CLI modules (light: imported before any command runs)."""

from __future__ import annotations

from collections.abc import Sequence

import typer


def check_choice(value: str, allowed: Sequence[str], option: str) -> str:
    """A bad value of a choice option is a usage error like any bad option value (exit 2,
    click's message); any letter case is accepted (as enum values in documents).  Returns the
    allowed spelling."""
    for choice in allowed:
        if value.casefold() == choice.casefold():
            return choice
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=option)


def check_format(value: str, allowed: Sequence[str]) -> str:
    return check_choice(value, allowed, "--format")


def home_of(ctx: typer.Context) -> str | None:
    """The `--home` given to `meterql` (click hands the root's `obj` to every subcommand)."""
    return (ctx.obj or {}).get("home")
