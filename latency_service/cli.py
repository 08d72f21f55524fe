"""``mnas-latency serve``: run the latency service for one device profile."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The mnas latency and memory service.")


@app.callback()
def _root() -> None:
    """Keep `serve` a subcommand even though it is the only one."""


@app.command()
def serve(
    device: str = typer.Option("", envvar="MNAS_LATENCY_DEVICE", help="device profile YAML (or a name in devices/profiles); env MNAS_LATENCY_DEVICE"),
    host: str = typer.Option("127.0.0.1", help="bind address; loopback by default"),
    port: int = typer.Option(8600),
    token: Optional[str] = typer.Option(None, envvar="MNAS_LATENCY_TOKEN", help="require this bearer token; env MNAS_LATENCY_TOKEN"),
    db: Path = typer.Option(Path("latency-cache.sqlite"), envvar="MNAS_LATENCY_DB", help="SQLite result cache; env MNAS_LATENCY_DB"),
    max_upload_mb: float = typer.Option(200.0, help="largest accepted model file"),
    queue_timeout_s: float = typer.Option(1800.0, help="longest a request waits for the device"),
):
    """Serve POST /v1/measure, GET /v1/devices, /healthz and /metrics."""
    import uvicorn

    from devices.errors import ProfileError
    from devices.profile import load_profile
    from latency_service.app import create_app

    if not device:
        typer.echo("error: --device PROFILE.yaml is required (or set MNAS_LATENCY_DEVICE)", err=True)
        raise typer.Exit(2)
    try:
        profile = load_profile(device)
    except ProfileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        typer.echo(f"warning: serving on {host} without a token; anyone who can reach it can use the device", err=True)
    application = create_app(profile, token=token, db_path=db, max_upload_mb=max_upload_mb, queue_timeout_s=queue_timeout_s)
    typer.echo(f"mnas-latency: device {profile.name} ({profile.backend}, {profile.threads} thread(s)) on http://{host}:{port}")
    uvicorn.run(application, host=host, port=port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    app()
