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
    budgets: bool = typer.Option(True, help="also hard latency budgets at the table's 25th/50th/75th latency percentiles"),
    pareto: bool = typer.Option(True, help="also Pareto mode: the hypervolume of what each controller proposed"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Compare controllers on a surrogate fitted to architectures really trained: the soft reward at the
    median latency, the best top-1 under hard latency budgets after 50/100/300/1000 proposals, and
    Pareto mode's hypervolume."""
    from dataclasses import asdict

    from search.controllers import controller_names
    from search.controllers.budgets import budget_comparison, format_budgets, format_pareto, pareto_comparison
    from search.controllers.surrogate import Surrogate, compare, format_comparison, load_table

    unknown = [c for c in controllers if c not in controller_names()]
    if unknown:
        raise MnasError(f"unknown controller(s) {unknown}; use {', '.join(controller_names())}")
    try:
        loaded = load_table(table)
    except (OSError, ValueError, KeyError) as exc:
        raise MnasError(f"cannot read trial table {table!r}: {exc}") from None
    try:
        surrogate = Surrogate(loaded)
    except (ValueError, KeyError, IndexError) as exc:
        raise MnasError(f"trial table {table!r} does not fit its space: {exc}") from None
    result = compare(loaded, controllers, proposals, seeds, ax_proposals, name=table, surrogate=surrogate)
    if budgets:  # Ax refits per proposal: its budgets take hours here, so it answers the soft question alone
        result.budgets = budget_comparison(loaded, [c for c in controllers if c != "ax"], proposals, seeds, surrogate)
    if pareto:
        reward, result.pareto = pareto_comparison(loaded, [c for c in controllers if c != "ax"], proposals, seeds, surrogate)
        result.pareto_reward = reward.model_dump()
    if as_json:
        sys.stdout.write(json.dumps(asdict(result), indent=2) + "\n")
    else:
        console.print(format_comparison(result), soft_wrap=True, highlight=False)
        if result.budgets:
            console.print("\n" + format_budgets(result.budgets), soft_wrap=True, highlight=False)
        if result.pareto:
            console.print("\n" + format_pareto(result.pareto_reward, result.pareto), soft_wrap=True, highlight=False)


def controllers_app() -> typer.Typer:
    sub = typer.Typer(no_args_is_help=True, help="Search controllers: compare them on real trial data.")
    sub.command("compare")(controllers_compare_cmd)
    return sub
