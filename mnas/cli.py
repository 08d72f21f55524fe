"""The model side of the ``mnas`` command line: ``arch``, ``space`` and ``train``.

Commands are plain functions; ``add_model_commands`` registers them on an app, which
``search.cli.build_app`` builds with the search-side commands. Every user error ends in
one line on stderr and exit status 2 (``user_errors``).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mnas.errors import MnasError

console = Console()
err_console = Console(stderr=True)


def user_errors(fn):
    """Turn MnasError (and pydantic validation errors) into one clear line and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pydantic import ValidationError

        try:
            return fn(*args, **kwargs)
        except MnasError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            err_console.print(f"[bold red]error:[/] {where}: {first['msg']}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


# ----- arch -------------------------------------------------------------------------------
@user_errors
def arch_info_cmd(
    arch: str = typer.Argument(..., help="preset name, architecture JSON file, or comma-separated timm block strings"),
    resolution: int = typer.Option(224, help="input resolution in pixels"),
    width_mult: float = typer.Option(1.0, help="width multiplier (TF round_filters, divisor 8; head kept)"),
    num_classes: int = typer.Option(1000, help="classifier outputs"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Parameters, multiply-adds (fvcore) and timm block strings of an architecture."""
    from mnas.costs import arch_info
    from mnas.presets import load_architecture
    from mnas.recipe import check_width_mult

    if resolution < 8:
        raise MnasError(f"--resolution must be at least 8 pixels (got {resolution})")
    try:
        check_width_mult(width_mult)
    except ValueError as exc:
        raise MnasError(f"--width-mult: {exc}") from None
    if num_classes < 1:
        raise MnasError(f"--num-classes must be at least 1 (got {num_classes})")
    info = arch_info(load_architecture(arch), resolution, width_mult, num_classes)
    if as_json:
        _print_json(info)
        return
    table = Table(title=arch, show_header=False)
    table.add_row("params", f"{info['params']:,}")
    table.add_row("MACs (conv + linear)", f"{info['macs'] / 1e6:.1f} M")
    table.add_row("fvcore total (incl. BN)", f"{info['fvcore_total'] / 1e6:.1f} M")
    table.add_row("input", f"{resolution} px, width x{width_mult:g}, {num_classes} classes")
    for i, block in enumerate(info["blocks"], 1):
        table.add_row(f"block {i}", block)
    console.print(table)


# ----- space ------------------------------------------------------------------------------
SPACE_ARG = typer.Argument("mnasnet", help="a shipped space (mnasnet, mobilenetv3, proxylessnas, tiny) or a space YAML file")


@user_errors
def space_info_cmd(space: str = SPACE_ARG, as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Size and token layout of a search space."""
    from mnas.space import load_space

    info = load_space(space).info()
    if as_json:
        _print_json(info)
        return
    console.print(f"{info['name']}: {info['description']}")
    console.print(f"base: {info['base']}")
    console.print(f"{info['num_blocks']} blocks ({info['searched_blocks']} searched), choices per block {info['choices_per_block']}, "
                  f"10^{info['size_log10']:.2f} architectures")
    console.print(f"{info['num_tokens']} tokens: " + ", ".join(dict.fromkeys(t['name'] for t in info['tokens'])))


@user_errors
def space_sample_cmd(
    space: str = SPACE_ARG,
    seed: int = typer.Option(0, help="random seed"),
    as_json: bool = typer.Option(False, "--json", help="print the architecture JSON"),
):
    """Draw a random architecture from a search space."""
    from mnas.space import load_space

    arch = load_space(space).sample(seed)
    if as_json:
        _print_json(arch.to_dict())
    else:
        console.print("\n".join(arch.to_timm()))


@user_errors
def space_around_cmd(
    arch: str = typer.Argument(..., help="preset, architecture JSON file, or timm block strings (e.g. a search's best)"),
    out: Path = typer.Option(..., "--out", help="space YAML to write"),
    radius: int = typer.Option(1, help="steps along kernel, expansion, filters (x0.25) and depth"),
    name: str = typer.Option("around", help="the new space's name"),
):
    """Write a smaller space centred on an architecture, for a second, finer search."""
    import yaml

    from mnas.presets import load_architecture
    from mnas.space import space_around

    space = space_around(load_architecture(arch), radius, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(space.to_file(), sort_keys=False, default_flow_style=None))
    console.print(f"wrote {out}: {len(space.tokens)} tokens, 10^{space.size_log10:.2f} architectures")


# ----- train ------------------------------------------------------------------------------
@user_errors
def train_cmd(
    arch: str = typer.Argument(..., help="preset, architecture JSON file, or timm block strings"),
    data: str = typer.Option(..., help="digits | npz:DIR | imagefolder:DIR"),
    epochs: int = typer.Option(5, min=1),
    resolution: int = typer.Option(32),
    batch_size: int = typer.Option(128, min=1),
    lr: float | None = typer.Option(None, help="peak learning rate (default 0.2 x batch/256)"),
    label_smoothing: float = typer.Option(0.0),
    width_mult: float = typer.Option(1.0),
    stride_cuts: int | None = typer.Option(None, min=0, max=6, help="leading stride-2 steps run at stride 1 (default by resolution)"),
    limit: int | None = typer.Option(None, help="train on a stratified subset of this many images"),
    stage1: bool = typer.Option(False, help="train on the 90% search split and evaluate on the 10% held out"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ..."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("runs/train"), help="folder for checkpoint.pt and metrics.json"),
):
    """Train one architecture (stage-2 full training) and write a checkpoint and metrics."""
    from mnas.data import load_dataset, stratified_split
    from mnas.presets import load_architecture
    from mnas.train import TrainConfig, train_model

    architecture = load_architecture(arch)
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, resolution=resolution, lr=lr, label_smoothing=label_smoothing,
        width_mult=width_mult, stride_cuts=stride_cuts, device=device, seed=seed,
    )
    dataset = load_dataset(data)
    train_src, eval_src = dataset.stage1(seed) if stage1 else dataset.stage2()
    if limit is not None and limit < len(train_src):
        keep, _ = stratified_split(train_src.labels, 1 - limit / len(train_src), seed)
        train_src = train_src.subset(keep)
    console.print(f"training {architecture.summary()} on {len(train_src):,} images of {data}, evaluating on {len(eval_src):,}")
    metrics = train_model(architecture, train_src, eval_src, dataset.num_classes, cfg, out_dir=out, progress=True)
    console.print(
        f"top-1 {metrics['top1']:.4f}  loss {metrics['eval_loss']:.4f}  "
        f"{metrics['images_per_s']:.0f} img/s  {metrics['train_seconds']:.1f} s on {metrics['device']}  -> {out}"
    )


def add_model_commands(app: typer.Typer) -> None:
    """Register ``arch info``, ``space info|sample`` and ``train`` on ``app``."""
    arch = typer.Typer(no_args_is_help=True, help="Inspect architectures.")
    arch.command("info")(arch_info_cmd)
    space = typer.Typer(no_args_is_help=True, help="Inspect and sample the search space.")
    space.command("info")(space_info_cmd)
    space.command("sample")(space_sample_cmd)
    space.command("around")(space_around_cmd)
    app.add_typer(arch, name="arch")
    app.add_typer(space, name="space")
    app.command("train")(train_cmd)
