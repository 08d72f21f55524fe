"""``mnas data prepare|info``: prepare an image folder once into shards; describe any data spec."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from mnas.cli import console, err_console, user_errors
from mnas.errors import DataError


@user_errors
def prepare_cmd(
    source: str = typer.Argument(..., help="imagefolder:DIR (DIR/train/<class>/*, DIR/val/<class>/*)"),
    resolution: int = typer.Option(..., help="side of the stored images (shorter side to R / crop, then the centre R x R)"),
    out: Path = typer.Option(..., "--out", help="shards directory (run again to continue after a kill); then use shards:DIR"),
    classes: int | None = typer.Option(None, min=1, help="the first N classes (sorted by name)"),
    class_list: Path | None = typer.Option(None, help="a file with one class name per line"),
    per_class: int | None = typer.Option(None, min=1, help="the first K training images of each class (val kept whole)"),
    workers: int = typer.Option(1, min=1, help="decoding processes"),
    crop: float = typer.Option(0.875, help="centre-crop share of the resized shorter side (0.875: R x 1.14)"),
    shard_size: int = typer.Option(4096, min=1, help="images per shard file"),
    progress: bool = typer.Option(True, help="progress bar with ETA on stderr"),
):
    """Decode an image folder once into memory-mapped uint8 shards (resumable; corrupt images skipped and listed)."""
    from mnas.shards import prepare_shards

    kind, _, folder = source.partition(":")
    if kind != "imagefolder" or not folder:
        raise DataError(f"mnas data prepare reads an image folder: imagefolder:DIR (got {source!r})")
    if classes and class_list:
        raise DataError("give --classes or --class-list, not both")
    t0 = time.perf_counter()
    with _bar(progress) as report:
        manifest = prepare_shards(Path(folder), resolution, out, classes, class_list, per_class, workers, shard_size, crop, report)
    seconds = time.perf_counter() - t0
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    skipped = len(train["skipped"]) + len(val["skipped"])
    console.print(f"wrote {out}: {train['images']} train + {val['images']} val images at {resolution} px, {manifest['num_classes']} classes, "
                  f"{skipped} skipped (listed in manifest.json); {seconds:.0f} s. Use it as shards:{out}", highlight=False, soft_wrap=True)
    for c in manifest["empty_classes"]:
        err_console.print(f"[yellow]warning:[/] class {c} has no training images", highlight=False)


class _bar:
    """A rich progress bar fed by ``prepare_shards``'s (done, total) calls; silent when off."""

    def __init__(self, enabled: bool):
        self.enabled, self.progress, self.task = enabled, None, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("decoding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("ETA"), TimeRemainingColumn(), console=err_console)
            self.progress.start()
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task("decode", total=total, completed=done)
        self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()


@user_errors
def info_cmd(
    spec: str = typer.Argument(..., help="data spec: digits, npz:DIR, imagefolder:DIR or shards:DIR"),
    resolution: int | None = typer.Option(None, help="imagefolder: the resolution it would be decoded at (size in memory)"),
    verify: bool = typer.Option(False, help="shards: recompute every shard's checksum against the manifest"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Counts per class, image size, size on disk and in memory, class imbalance, and warnings."""
    from rich.table import Table

    from mnas.data_info import data_info

    info = data_info(spec, resolution)
    if verify:
        kind, _, arg = spec.partition(":")
        if kind != "shards":
            raise DataError("--verify checks prepared shards: give shards:DIR")
        from mnas.shards import read_manifest, verify_shards

        info["damaged_shards"] = verify_shards(Path(arg), read_manifest(Path(arg)))
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    else:
        table = Table(show_header=False, title=info["spec"])
        gb = lambda b: "-" if b is None else f"{b / 1e9:.3f} GB"  # noqa: E731
        table.add_row("classes", str(info["num_classes"]))
        table.add_row("images", f"{info['train']['images']} train, {info['test']['images']} test")
        table.add_row("per class (train)", f"{info['smallest_class']} to {info['largest_class']}"
                      + ("" if info["imbalance"] is None else f" (imbalance {info['imbalance']:.2f}x)"))
        table.add_row("image size", "-" if info["image_size"] is None else "x".join(map(str, info["image_size"])))
        table.add_row("on disk", gb(info["disk_bytes"]))
        table.add_row("in memory (uint8)", gb(info["memory_bytes"]))
        if verify:
            table.add_row("checksums", "all match" if not info["damaged_shards"] else f"{len(info['damaged_shards'])} damaged")
        console.print(table)
        for w in info["warnings"]:
            err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
        if info.get("note"):
            err_console.print(info["note"], highlight=False)
    if verify and info["damaged_shards"]:
        raise DataError(f"damaged shard file(s): {', '.join(info['damaged_shards'][:3])}; prepare the shards again")


def data_app() -> typer.Typer:
    sub = typer.Typer(no_args_is_help=True, help="Datasets: prepare image folders into shards, describe a data spec.")
    sub.command("prepare")(prepare_cmd)
    sub.command("info")(info_cmd)
    return sub
