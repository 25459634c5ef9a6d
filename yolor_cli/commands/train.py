"""``yolor train``: train or fine-tune a YOLOR model; with no --data, on the built-in demo data."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from yolor_cli.console import RichReporter, markup, print_json, print_notes, stdout_console
from yolor_cli.engine.train.recipe import OPTIMIZER_CHOICES
from yolor_cli.options import CfgOption, DeviceOption, ExistOkOption, JsonOption, NameOption, ProjectOption

# --optimizer's choices, as the engine names them (the recipe module has no torch: the CLI stays quick to start).
Optimizer = Enum("Optimizer", {name: name for name in OPTIMIZER_CHOICES}, type=str)  # type: ignore[misc]


def train_command(
    last: Annotated[
        Path | None,
        typer.Argument(
            help="With --resume: the last.pt to continue (default: the newest under --project).", show_default=False
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="data.yaml; without it, the built-in demo data (generated once, cached).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    cfg: CfgOption = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            "-w",
            help="Start from these weights (ours keep their architecture, pruned shapes too; "
            "official ones need --cfg); matching tensors are transferred.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    hyp: Annotated[
        str | None,
        typer.Option(
            "--hyp",
            help="Hyperparameter YAML or bundled name (default scratch.640; demo data: demo).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Default 300; 10 on the demo data.", show_default=False)
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Total over all processes (default 8).", show_default=False),
    ] = None,
    nominal_batch_size: Annotated[
        int | None,
        typer.Option(
            "--nominal-batch-size",
            min=1,
            help="Accumulate gradients up to this batch before a step (default: 64 as YOLOR, "
            "no accumulation for short runs under --optimizer auto).",
            show_default=False,
        ),
    ] = None,
    img_size: Annotated[
        list[int] | None,
        typer.Option(
            "--img-size",
            help="Train size, and optionally (repeat the option) the validation size "
            "(default 640; 320 on the demo data).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOption = "",
    workers: Annotated[int, typer.Option("--workers", min=0)] = 8,
    project: ProjectOption = Path("runs/train"),
    name: NameOption = "exp",
    exist_ok: ExistOkOption = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run (see LAST).")] = False,
    multi_scale: Annotated[bool, typer.Option("--multi-scale", help="Vary the size +/- 50 % per batch.")] = False,
    image_weights: Annotated[
        bool, typer.Option("--image-weights", help="Draw images of rare and poorly detected classes more often.")
    ] = False,
    rect: Annotated[bool, typer.Option("--rect", help="Rectangular batches (no mosaic).")] = False,
    cache_images: Annotated[bool, typer.Option("--cache-images", help="Keep resized images in RAM.")] = False,
    optimizer: Annotated[
        Optimizer | None,
        typer.Option(
            "--optimizer",
            help="auto (default): YOLOR's SGD recipe from 10,000 iterations, AdamW for shorter runs; "
            "the choice is printed and kept in opt.yaml.",
            show_default=False,
        ),
    ] = None,
    adam: Annotated[bool, typer.Option("--adam", help="The same as --optimizer adam.")] = False,
    close_mosaic: Annotated[
        int | None,
        typer.Option(
            "--close-mosaic",
            min=0,
            help="Train the last N epochs without mosaic and mixup, at most half the run "
            "(default 10; 0: mosaic to the end).",
            show_default=False,
        ),
    ] = None,
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="BatchNorm statistics over all DDP processes.")] = False,
    single_cls: Annotated[bool, typer.Option("--single-cls", help="Train every object as one class.")] = False,
    sparsity: Annotated[
        float,
        typer.Option(
            "--sparsity",
            min=0.0,
            help="L1 penalty on BatchNorm scales (network slimming, e.g. 1e-4) before yolor prune --method bn.",
        ),
    ] = 0.0,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help="Mixed precision: fp16 autocast on CUDA (on by default), bf16 on a CPU with AMX-BF16 or "
            "AVX-512 BF16 (only with --amp); a resumed run keeps its own.",
            show_default=False,
        ),
    ] = None,
    teacher: Annotated[
        Path | None,
        typer.Option(
            "--teacher",
            help="Distil from this checkpoint (e.g. the unpruned model a pruned --weights came from): "
            "same classes and detection heads; it is evaluated once at the start.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    distill_weight: Annotated[
        float | None,
        typer.Option(
            "--distill-weight",
            help="Weight of the distillation term in the loss, above 0 (the run header shows the one used); "
            "needs --teacher.",
            show_default=False,
        ),
    ] = None,
    noval: Annotated[bool, typer.Option("--noval", help="Validate only after the last epoch.")] = False,
    nosave: Annotated[bool, typer.Option("--nosave", help="Write only the final last.pt.")] = False,
    period: Annotated[int, typer.Option("--period", min=0, help="Validate from this epoch on.")] = 0,
    save_period: Annotated[int, typer.Option("--save-period", min=0, help="epoch_NNN.pt every N epochs.")] = 25,
    patience: Annotated[
        int, typer.Option("--patience", min=0, help="Stop after N epochs without a better fitness (0: never).")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    pt: Annotated[bool, typer.Option("--pt", help="Accepted for users of the old scripts; changes nothing.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Train a detector and write runs/train/exp*: weights/{last,best,...}.pt, results.csv, hyp.yaml, opt.yaml."""
    from yolor_cli.engine.errors import YolorError
    from yolor_cli.engine.train.run import TrainOptions, launch, plan_training, train

    if last is not None and str(last).isdigit():  # the old scripts' `--img-size 640 640`
        raise YolorError(
            f"unexpected argument {last}",
            hint=f"give the validation size by repeating the option: --img-size 640 --img-size {last}",
        )
    if last is not None and not resume:
        raise YolorError(f"unexpected argument {last}", hint="to continue a run: yolor train --resume LAST")
    if img_size and len(img_size) > 2:
        raise YolorError("--img-size takes one or two sizes (train, then validation)")
    options = TrainOptions.resolve(
        data=str(data) if data else None,
        cfg=cfg,
        weights=str(weights) if weights else None,
        hyp=hyp,
        epochs=epochs,
        batch_size=batch_size,
        nominal_batch_size=nominal_batch_size,
        img_size=img_size[0] if img_size else None,
        test_img_size=img_size[1] if img_size and len(img_size) > 1 else None,
        device=device,
        workers=workers,
        project=str(project),
        name=name,
        exist_ok=exist_ok,
        multi_scale=multi_scale,
        image_weights=image_weights,
        rect=rect,
        cache_images=cache_images,
        optimizer=optimizer.value if optimizer else None,
        adam=adam,
        close_mosaic=close_mosaic,
        sync_bn=sync_bn,
        single_cls=single_cls,
        sparsity=sparsity,
        amp=amp,
        teacher=str(teacher) if teacher else None,
        distill_weight=distill_weight,
        noval=noval,
        nosave=nosave,
        period=period,
        save_period=save_period,
        patience=patience,
        seed=seed,
    )
    plan = plan_training(options, resume=resume, last=last)
    if plan.launch:  # --device 0,1: one process per GPU, started by torchrun
        raise typer.Exit(launch(plan, sys.argv[1:]))
    result = train(plan, reporter=RichReporter())
    if not result.is_main:
        return
    print_notes(
        result.notes
        + ([f"transferred {result.transferred[0]}/{result.transferred[1]} tensors"] if result.transferred else [])
    )
    if json_output:
        print_json(
            {
                "save_dir": str(result.save_dir),
                "epochs_run": result.epochs_run,
                "best_fitness": result.best_fitness,
                **result.metrics,
            }
        )
        return
    console = stdout_console()
    summary = "  ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
    console.print(markup("Trained {} epochs. {}\nResults in [b]{}[/]", result.epochs_run, summary, result.save_dir))
