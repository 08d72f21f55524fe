"""``mnas-latency serve``: run the latency service for one or more device profiles;
``mnas-latency calibrate``: the reference figure that makes a profile drift-free."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The mnas latency and memory service.")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.callback()
def _root() -> None:
    """Keep `serve` and `calibrate` subcommands."""


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
    token: str | None = typer.Option(None, envvar="MNAS_LATENCY_TOKEN", help="require this bearer token; env MNAS_LATENCY_TOKEN"),
    token_file: Path | None = typer.Option(None, envvar="MNAS_LATENCY_TOKEN_FILE",
                                              help="without --token: the token kept in this file, generated at first start"),
    insecure: bool = typer.Option(False, help="allow a non-loopback bind without a token (anyone who reaches it can use the devices)"),
    db: Path = typer.Option(Path("latency-cache.sqlite"), envvar="MNAS_LATENCY_DB", help="SQLite result cache; env MNAS_LATENCY_DB"),
    audit_log: Path | None = typer.Option(None, envvar="MNAS_LATENCY_AUDIT_LOG",
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


@app.command()
def calibrate(
    device: str = typer.Option(..., "--device", help="a device profile YAML or a name in devices/profiles; with or without a reference"),
    reference: str | None = typer.Option(None, help="the reference model: an ONNX file or a name in devices/references "
                                                        "(default: the profile's, else mnasnet-a1-64)"),
    rounds: int = typer.Option(10, min=3, max=200, help="measurements of the reference, one after another"),
):
    """Measure a profile's reference model alone, on an idle machine, and print the
    ``reference:`` block that makes the profile drift-free (latency as a ratio to it)."""
    import statistics

    from devices.errors import MeasurementError
    from devices.measure import measure_file
    from devices.profile import reference_file

    (profile,) = load_profiles([device])
    if profile.backend == "android-adb":
        _fail(f"{profile.name} measures on a phone through benchmark_model, which cannot time a reference in the same process")
    model = reference or (profile.reference.model if profile.reference else "mnasnet-a1-64")
    path = reference_file(model)
    if not path.is_file():
        _fail(f"reference model not found: {model}")
    alone = profile.model_copy(update={"reference": None, "backend": "onnxruntime"})  # the reference always runs on onnxruntime
    values = []
    try:
        for i in range(rounds):
            values.append(measure_file(alone, path)["latency_ms"])
            typer.echo(f"  {i + 1}/{rounds}: {values[-1]:.4f} ms", err=True)
    except MeasurementError as exc:
        _fail(f"measuring the reference failed ({exc.kind}): {exc}")
    median = statistics.median(values)
    typer.echo(f"{model} on {profile.name}: median {median:.4f} ms over {rounds} measurements "
               f"(min {min(values):.4f}, max {max(values):.4f}; spread {max(values) / min(values) - 1:.1%})")
    typer.echo("put this in the profile (a machine that drifted during calibration shifts every figure by the same factor):")
    typer.echo(f"reference:\n  model: {model}\n  latency_ms: {median:.4f}")


if __name__ == "__main__":  # pragma: no cover
    app()
