"""``mnas doctor``: versions, devices, then the checks; exit 1 when a check that ran failed."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import typer

from mnas.cli import console, user_errors


@user_errors
def doctor_cmd(
    gpu: bool = typer.Option(False, "--gpu", help="also measure the proxy throughput on the GPU (the P1 figure, ~2 minutes)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    service: list[str] = typer.Option([], "--service", envvar="MNAS_LATENCY_URL",
                                      help="a latency service to reach (repeat the option; MNAS_LATENCY_URL may list several)"),
    token: str | None = typer.Option(None, envvar="MNAS_LATENCY_TOKEN", help="bearer token for those services"),
    keep: Path | None = typer.Option(None, help="keep the checks' files (models, supernet, logs) in this folder"),
):
    """Check this machine end to end: versions, GPUs, phones, latency services, then a short real run
    of every path it can take (trials per precision and layout, supernet resume, one-shot, export and
    measurement on each runtime, a service round trip; on a GPU the fast data path and packing)."""
    from search.doctor import facts
    from search.doctor.checks import FAIL, all_checks, run_check

    urls = [u for item in service for u in item.replace(",", " ").split()]
    gpus = facts.gpus()
    report = {"versions": facts.versions(), "gpus": gpus, "phones": facts.phones(), "services": facts.services(urls, token), "checks": []}
    if not as_json:
        _print_facts(report)
    with tempfile.TemporaryDirectory(prefix="mnas-doctor-") as scratch:
        work = keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for name, fn in all_checks(work, len(gpus), gpu):
            check = run_check(name, fn)
            report["checks"].append(check.to_dict())
            if not as_json:
                style = {"pass": "green", "fail": "red"}.get(check.status, "dim")
                console.print(f"  [{style}]{check.status:<8}[/] {check.name:<50} {check.seconds:6.1f} s  {check.reason}", soft_wrap=True,
                              highlight=False)
    failed_checks = [c for c in report["checks"] if c["status"] == FAIL]
    failed = failed_checks + [s for s in report["services"] if not s["ok"]]
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        ran = sum(c["status"] != "not run" for c in report["checks"])
        console.print(f"\n{ran - len(failed_checks)} of {ran} checks passed; "
                      f"{len(report['checks']) - ran} not run on this machine" + (f"; {len(failed)} problem(s)" if failed else ""))
    if failed:
        raise typer.Exit(1)


def _print_facts(report: dict) -> None:
    console.print("[bold]versions[/]")
    for name, version in report["versions"].items():
        console.print(f"  {name:<24} {version or '[dim]not installed[/]'}", highlight=False)
    console.print("[bold]GPUs[/]")
    for g in report["gpus"] or [{"name": "none (torch sees no CUDA device)"}]:
        extra = f"  {g['memory_mb']} MB, capability {g['capability']}, bf16 {'yes' if g['bf16'] else 'no'}, auto precision {g['auto precision']}" \
            if "index" in g else ""
        console.print(f"  {g['name']}{extra}", highlight=False)
    phones = report["phones"]
    console.print("[bold]phones (adb)[/]")
    console.print(f"  {phones}" if isinstance(phones, str) else "\n".join(f"  {p['serial']} {p['state']} {p['details']}" for p in phones) or "  none attached",
                  highlight=False)
    console.print("[bold]latency services[/]")
    for s in report["services"] or [{"url": "none given (--service URL or MNAS_LATENCY_URL)", "ok": None}]:
        state = "" if s["ok"] is None else (f" up, devices {', '.join(s['devices'])}" if s["ok"] else f" [red]unreachable[/]: {s['error']}")
        console.print(f"  {s['url']}{state}", highlight=False)
    console.print("[bold]checks[/]")
