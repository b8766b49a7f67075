"""`hope profile`: per-component latency, throughput and memory of predictors side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from hopecli.commands.help import HopeCommand
from hopecli.commands.options import compile_option, threads_option
from hopecli.console import err

KIND_LABELS = {
    "embedding": "embedding",
    "titan_read": "Titan read",
    "titan_update": "Titan update",
    "cms": "CMS",
    "spatial_mixing": "spatial mixing",
    "attention": "attention",
    "mlp": "MLP (T blocks)",
    "decoder": "decoder",
}


EXAMPLES = [
    ("two CPU-sized presets side by side",
     "hope profile --preset hope_tiny --preset vit_tiny --batch-size 2 --frames 8 --device cpu"),
    ("trained runs at their own shapes, as JSON",
     "hope profile --run runs/hope --run runs/vit --json > profile.json"),
]


# the --help panels, in order; every option belongs to one (tests/test_help.py checks)
PANELS = [
    ("Models", ["--preset", "--run"]),
    ("Shapes", ["--batch-size", "--frames", "--input-dim", "--patches", "--action-dim", "--state-dim"]),
    ("Timing", ["--warmup", "--repeats", "--device", "--dtype", "--threads", "--compile"]),
    ("Planning", ["--plan-samples", "--plan-iterations", "--plan-horizon"]),
    ("Output", ["--json", "--help"]),
]


@click.command(cls=HopeCommand, examples=EXAMPLES, see_also=["train"],
               option_panels=PANELS)
@click.option("--preset", "presets", multiple=True,
              help="Predictor preset to profile (repeatable), e.g. hope_tiny, vit_tiny, hope_phase5.")
@click.option("--run", "runs", type=click.Path(path_type=Path), multiple=True,
              help="Run folder of `hope train` to profile with its own shapes (repeatable).")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--frames", type=click.IntRange(min=2), default=8, show_default=True,
              help="Frames per forward; a rollout step is one more frame after frames - 1.")
@click.option("--input-dim", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Feature width D_in of presets (runs keep theirs).")
@click.option("--patches", type=click.IntRange(min=1), default=256, show_default=True,
              help="Patches per step P of presets (a square number; runs keep theirs).")
@click.option("--action-dim", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--state-dim", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed repeats; medians are reported.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto",
              show_default=True,
              help="auto: bf16 autocast on a GPU, float32 on the CPU.")
@click.option("--plan-samples", type=click.IntRange(min=0), default=100, show_default=True,
              help="Candidates of the timed CEM planning step (hope rollout --plan); 0: no planning step.")
@click.option("--plan-iterations", type=click.IntRange(min=1), default=5, show_default=True,
              help="CEM iterations of the timed planning step.")
@click.option("--plan-horizon", type=click.IntRange(min=1), default=2, show_default=True,
              help="Steps of every candidate action sequence of the timed planning step.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON on stdout.")
@threads_option
@compile_option
def command(presets, runs, batch_size, frames, input_dim, patches, action_dim, state_dim, warmup, repeats,
            device, dtype, plan_samples, plan_iterations, plan_horizon, as_json):
    """Time predictors by component: embedding, per block Titan read / update, CMS,
    spatial mixing or attention / MLP, and the decoder; plus a forward, a training step
    (forward + backward) and one streaming rollout step, with tokens/s and peak memory;
    and one CEM planning step beside the time its FLOPs take at the measured matmul peak.
    """
    from hopecli.errors import HopeError
    from hopecli.model import PRESETS, build_predictor, preset_config
    from hopecli.profile import ProfileConfig, profile_models
    from hopecli.runs.load import load_run

    if not presets and not runs:
        raise click.UsageError("give at least one --preset or --run")
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise click.BadParameter(f"unknown preset {unknown[0]!r}; choose from {', '.join(sorted(PRESETS))}",
                                 param_hint="--preset")
    try:
        cfg = ProfileConfig(batch_size=batch_size, frames=frames, warmup=warmup, repeats=repeats,
                            device=device, dtype=dtype, plan_samples=plan_samples,
                            plan_iterations=plan_iterations, plan_horizon=plan_horizon)
        models = [(name, build_predictor(name, input_dim=input_dim, patches_per_step=patches,
                                         action_dim=action_dim, state_dim=state_dim,
                                         max_frames=max(frames, preset_config(name).max_frames)))
                  for name in presets]
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    models += [(str(r), load_run(r).model) for r in runs]
    with err.status("profiling") as status:
        try:
            report = profile_models(models, cfg, on_model=lambda n: status.update(f"profiling {n}"))
        except ValueError as e:
            raise HopeError(str(e)) from e
    _summary(report)
    _components(report)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))


def _summary(report) -> None:
    table = Table(title=f"latency on {report.device} ({report.dtype}), batch {report.batch_size} x "
                        f"{report.frames} frames, median of {report.repeats}")
    table.add_column("")
    for m in report.models:
        table.add_column(f"{m.name}\n{m.pattern}", justify="right")

    def mib(v):
        return "-" if v is None else f"{v:,.0f}"

    rows = [
        ("parameters", [f"{m.parameters:,}" for m in report.models]),
        ("forward ms", [f"{m.forward_ms:.2f}" for m in report.models]),
        ("forward + backward ms", [f"{m.train_step_ms:.2f}" for m in report.models]),
        ("rollout step ms (1 frame, state carried)", [f"{m.rollout_step_ms:.2f}" for m in report.models]),
        ("tokens/s forward", [f"{m.tokens_per_s['forward']:,.0f}" for m in report.models]),
        ("tokens/s forward + backward", [f"{m.tokens_per_s['train_step']:,.0f}" for m in report.models]),
        ("tokens/s rollout step", [f"{m.tokens_per_s['rollout_step']:,.0f}" for m in report.models]),
        ("peak memory forward MiB", [mib(m.peak_memory_mib["forward"]) for m in report.models]),
        ("peak memory fwd + bwd MiB", [mib(m.peak_memory_mib["train_step"]) for m in report.models]),
    ]
    if any(m.plan_step_s is not None for m in report.models):
        rows += [
            ("planning step s (CEM, context shared)", [f"{m.plan_step_s:.3f}" for m in report.models]),
            ("planning step GFLOP", [f"{m.plan_gflop:.2f}" for m in report.models]),
            ("planning step / its FLOPs at matmul peak",
             [f"{m.plan_step_s / m.plan_bound_s:.1f}x" for m in report.models]),
        ]
    for label, cells in rows:
        table.add_row(label, *cells)
    err.print(table)


def _components(report) -> None:
    table = Table(title="forward by component, summed over blocks: ms (share of the hooked forward)")
    table.add_column("component")
    for m in report.models:
        table.add_column(m.name, justify="right")
    kinds = [m.by_kind() for m in report.models]
    for kind, label in KIND_LABELS.items():
        if not any(kind in k for k in kinds):
            continue
        cells = []
        for k in kinds:
            total = sum(k.values())
            cells.append(f"{k[kind]:.2f} ({100 * k[kind] / total:.0f}%)" if kind in k else "-")
        table.add_row(label, *cells)
    err.print(table)
