"""``mnas-latency serve``: run the latency service for one or more device profiles."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The mnas latency and memory service.")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.callback()
def _root() -> None:
    """Keep `serve` a subcommand even though it is the only one."""


def _fail(message: str):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def load_profiles(specs: list[str]) -> list:
    """Profiles from YAML files, names in devices/profiles, or directories of YAML files."""
    from devices.errors import ProfileError
    from devices.profile import load_profile

    paths: list[str] = []
    for spec in specs:
        for part in spec.split():  # an environment variable may list several
            folder = Path(part)
            paths += sorted(str(p) for p in folder.glob("*.yaml")) if folder.is_dir() else [part]
    if not paths:
        _fail("--device PROFILE.yaml is required (or set MNAS_LATENCY_DEVICE); repeat it, or give a folder of profiles, for several")
    try:
        return [load_profile(p) for p in paths]
    except ProfileError as exc:
        _fail(str(exc))


def token_from_file(path: Path) -> str:
    """The token kept in ``path``; a new random one written there (mode 600) and printed once."""
    if path.is_file():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    typer.echo(f"generated a bearer token (kept in {path}; clients send it as MNAS_LATENCY_TOKEN): {token}", err=True)
    return token


@app.command()
def serve(
    device: list[str] = typer.Option([], "--device", envvar="MNAS_LATENCY_DEVICE",
                                     help="device profile YAML, a name in devices/profiles, or a folder of profiles; repeat for several; "
                                          "env MNAS_LATENCY_DEVICE"),
    host: str = typer.Option("127.0.0.1", help="bind address; loopback by default"),
    port: int = typer.Option(8600),
    token: Optional[str] = typer.Option(None, envvar="MNAS_LATENCY_TOKEN", help="require this bearer token; env MNAS_LATENCY_TOKEN"),
    token_file: Optional[Path] = typer.Option(None, envvar="MNAS_LATENCY_TOKEN_FILE",
                                              help="without --token: the token kept in this file, generated at first start"),
    insecure: bool = typer.Option(False, help="allow a non-loopback bind without a token (anyone who reaches it can use the devices)"),
    db: Path = typer.Option(Path("latency-cache.sqlite"), envvar="MNAS_LATENCY_DB", help="SQLite result cache; env MNAS_LATENCY_DB"),
    audit_log: Optional[Path] = typer.Option(None, envvar="MNAS_LATENCY_AUDIT_LOG",
                                             help="JSON-lines log of every request (default: beside the cache, DB.audit.jsonl)"),
    max_upload_mb: float = typer.Option(200.0, help="largest accepted model file"),
    queue_timeout_s: float = typer.Option(1800.0, help="longest a request waits for a device"),
    max_queued_per_client: int = typer.Option(16, min=1, help="measurements one client address may have queued or running"),
    health_interval_s: float = typer.Option(30.0, min=1.0, help="seconds between device health checks"),
):
    """Serve POST /v1/measure, GET /v1/devices, /v1/targets, /healthz and /metrics."""
    import uvicorn

    from latency_service.app import create_app

    profiles = load_profiles(device)
    if not token and token_file:
        token = token_from_file(token_file)
    if host not in LOOPBACK and not token and not insecure:
        _fail(f"refusing to serve on {host} without a token: anyone who can reach it could use the devices. "
              "Give --token (or MNAS_LATENCY_TOKEN, or --token-file), or --insecure to do it anyway")
    if host not in LOOPBACK and not token:
        typer.echo(f"warning: serving on {host} without a token (--insecure)", err=True)
    try:
        application = create_app(profiles, token=token, db_path=db, max_upload_mb=max_upload_mb, queue_timeout_s=queue_timeout_s,
                                 max_queued_per_client=max_queued_per_client, audit_log=audit_log or db.with_suffix(".audit.jsonl"),
                                 health_interval_s=health_interval_s)
    except ValueError as exc:  # devices that cannot be served together (names, pools)
        _fail(str(exc))
    for p in profiles:
        typer.echo(f"mnas-latency: device {p.name}{f' (pool {p.pool})' if p.pool else ''} ({p.backend}, {p.threads} thread(s))")
    typer.echo(f"mnas-latency: serving {len(profiles)} device(s) on http://{host}:{port}")
    uvicorn.run(application, host=host, port=port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    app()
