"""The full ``mnas`` command: the model-side commands of mnas.cli plus latency and search.

``build_app()`` assembles it explicitly; ``app`` (the console script) and
``python -m search.cli`` are the same app. It lives on the search side because it reaches
the latency service's client, which the model side (``mnas``) must not import. Module
imports stay light (no torch, no pandas): each command imports what it needs, so that
``mnas status`` starts fast.
"""

from __future__ import annotations

import typer

from mnas.cli import add_model_commands
from search.controllers.cli import controllers_app
from search.doctor.cli import doctor_cmd
from search.latency.cli import latency_app, predictor_app
from search.results.cli import controllers_table_cmd, dashboard_cmd, estimate_cmd, export_cmd, report_cmd, status_cmd
from search.stages.cli import search_cmd, stage2_cmd, tune_cmd

SEARCH_COMMANDS = {
    "search": search_cmd, "stage2": stage2_cmd, "report": report_cmd, "status": status_cmd, "tune": tune_cmd,
    "estimate": estimate_cmd, "export": export_cmd, "dashboard": dashboard_cmd, "doctor": doctor_cmd,
}


def build_app() -> typer.Typer:
    """The whole ``mnas`` command: model-side commands, ``latency``, and the search commands."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hardware-aware neural architecture search (MnasNet).")
    add_model_commands(app)
    from mnas.data_cli import data_app

    app.add_typer(data_app(), name="data")
    app.add_typer(latency_app(), name="latency")
    app.add_typer(predictor_app(), name="predictor")
    controllers = controllers_app()
    controllers.command("table")(controllers_table_cmd)  # a search's trials as a table: results side, beside the compare command
    app.add_typer(controllers, name="controllers")
    from search.proxy.cli import proxy_app

    app.add_typer(proxy_app(), name="proxy")
    from search.oneshot.cli import supernet_app

    app.add_typer(supernet_app(), name="supernet")
    for name, command in SEARCH_COMMANDS.items():
        app.command(name)(command)
    return app


app = build_app()

if __name__ == "__main__":
    app()
