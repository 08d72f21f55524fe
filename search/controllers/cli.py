"""``mnas controllers compare``: controllers against a surrogate of real trainings."""

from __future__ import annotations

import json
import sys

import typer

from mnas.cli import console, user_errors
from mnas.errors import MnasError


@user_errors
def controllers_compare_cmd(
    table: str = typer.Option("cifar10-16px", "--table", help="a shipped table (search/tables/) or a table JSON file"),
    controllers: list[str] = typer.Option(["random", "evolution", "ppo"], "--controller", "-c",
                                          help="controllers to run (repeat the option); random always runs: it sets the bar"),
    proposals: int = typer.Option(300, min=1, help="proposals per controller and seed"),
    ax_proposals: int | None = typer.Option(None, min=1, help="fewer proposals for ax (each refits its model)"),
    seeds: list[int] = typer.Option([0, 1, 2], "--seed", help="seeds (repeat the option)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Compare controllers in seconds on a surrogate fitted to architectures really trained (search/surrogate.py)."""
    from dataclasses import asdict

    from search.controllers import controller_names
    from search.controllers.surrogate import compare, format_comparison, load_table

    unknown = [c for c in controllers if c not in controller_names()]
    if unknown:
        raise MnasError(f"unknown controller(s) {unknown}; use {', '.join(controller_names())}")
    try:
        loaded = load_table(table)
    except (OSError, ValueError, KeyError) as exc:
        raise MnasError(f"cannot read trial table {table!r}: {exc}") from None
    result = compare(loaded, controllers, proposals, seeds, ax_proposals, name=table)
    if as_json:
        sys.stdout.write(json.dumps(asdict(result), indent=2) + "\n")
    else:
        console.print(format_comparison(result), soft_wrap=True, highlight=False)


def controllers_app() -> typer.Typer:
    sub = typer.Typer(no_args_is_help=True, help="Search controllers: compare them on real trial data.")
    sub.command("compare")(controllers_compare_cmd)
    return sub
