"""`hope adapt`: test-time adaptation on new clips (memory, LayerNorm or both), against the
same model frozen and optionally a ViT baseline."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from hopecli.commands.help import HopeCommand
from hopecli.commands.options import compile_option, run_source_options, threads_option
from hopecli.console import err
from hopecli.runs.folder import dumps_report


EXAMPLES = [
    ("HOPE on a clip with a friction it never saw, against the ViT baseline adapted alike",
     "hope adapt --run demo_out/hope_naive/seed0 --clip sample_data/new_friction.mp4 --baseline demo_out/vit_naive/seed0"),
    ("only the in-context memory, with the CMS levels learning online, curves in a PNG",
     "hope adapt --run runs/hope --clip new.mp4 --method memory --cms-online --png adapt.png"),
    ("adapt on one clip, keep the state, continue on the next and then roll out from it",
     "hope adapt --run runs/hope --clip a.mp4 --save a.state && hope rollout --run runs/hope --clip b.mp4 --init-state a.state"),
]


# the --help panels, in order; every option belongs to one (tests/test_help.py checks)
PANELS = [
    ("Run and clips", ["--run", "--store", "--index", "--weights", "--which", "--clip"]),
    ("Adaptation", ["--method", "--cms-online", "--cms-lr", "--tta-lr", "--tta-every", "--baseline",
                    "--init-state", "--carry"]),
    ("Output", ["--save", "--png", "--json"]),
    ("Resources", ["--device", "--threads", "--compile", "--help"]),
]


@click.command(cls=HopeCommand, examples=EXAMPLES, see_also=["train", "rollout", "eval"],
               option_panels=PANELS)
@run_source_options
@click.option("--clip", "clips", type=click.Path(path_type=Path), multiple=True,
              help="A video with its .npz sidecar; repeat for several clips, streamed in order.")
@click.option("--method", "methods", type=click.Choice(["memory", "layernorm", "both"]), multiple=True,
              default=("memory",), show_default=True,
              help="memory: the Titan memories write in context (HOPE); layernorm: TENT, only the "
                   "LayerNorm weights learn online by Adam from the next-step error, memory frozen; "
                   "both: the two together. Repeat to compare several in one table.")
@click.option("--cms-online", is_flag=True,
              help="Under memory / both, the CMS levels also learn online from the next-step error, each at "
                   "its period in frames.")
@click.option("--cms-lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Online CMS step: typical change per weight per level update.")
@click.option("--tta-lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Adam learning rate of the LayerNorm updates (layernorm, both).")
@click.option("--tta-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Frames per LayerNorm Adam step, the gradients summed in between.")
@click.option("--baseline", "baseline_dir", type=click.Path(path_type=Path), default=None,
              help="A ViT baseline run on the same features, streamed beside for comparison (its LayerNorms "
                   "adapt too when a method includes layernorm).")
@click.option("--init-state", type=click.Path(path_type=Path), default=None,
              help="Start from a state written by --save (instead of the trained model as it is).")
@click.option("--carry", is_flag=True,
              help="With several --clip, continue the adapted state (memories, learned weights, Adam "
                   "moments) from one clip to the next instead of starting each clip afresh.")
@click.option("--save", type=click.Path(path_type=Path), default=None,
              help="Write the adapted state after the last clip (safetensors) for --init-state; needs a "
                   "single --method.")
@click.option("--png", type=click.Path(path_type=Path), default=None,
              help="Figure of the next-step error per step, one line per method, frozen and baseline.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@threads_option
@compile_option
def command(run_dir, clips, store, index, weights, which, methods, cms_online, cms_lr, tta_lr, tta_every,
            baseline_dir, init_state, carry, save, png, device, as_json):
    """Stream new clips through a trained predictor that adapts at test time.

    Each step predicts the next and is scored before anything learns from it. With
    memory the Titan memories write themselves as they read (and, with --cms-online, the
    CMS levels learn from the next-step error); with layernorm only the LayerNorm
    weights learn from that error (TENT), memory updates frozen; both does the two. The
    same model frozen runs on the same steps, and the table compares every method with
    it per step and on average; a --baseline run streams frozen and adapted alike, and
    its adaptation is compared with its own frozen run.

    A method is said to have helped (or hurt) only when its change beats the step-to-step
    spread: the per-step differences from the frozen model agree (a paired sign-flip
    test, p < 0.05) and their mean exceeds the standard error of the frozen model's mean
    error. Anything less is reported as "no clear change".
    """
    from hopecli.adapt import AdaptConfig, adapt, adapt_figure, load_state, save_state
    from hopecli.clips import load_clips
    from hopecli.errors import StoreMismatchError
    from hopecli.extract import resolve_device
    from hopecli.runs.checkpoint import check_finite_weights, resolve_checkpoint
    from hopecli.runs.load import load_run

    if bool(clips) == (store is not None):
        raise click.UsageError("give --clip VIDEO (repeatable) or --store STORE --index I")
    if store is not None and index is None:
        raise click.UsageError("--store needs --index")
    if carry and len(clips) < 2:
        raise click.UsageError("--carry continues the state across several --clip; give at least two")
    if save is not None and len(methods) > 1:
        raise click.UsageError("--save writes the state of one method; give a single --method")
    try:
        cfg = AdaptConfig(methods=methods, cms_online=cms_online, cms_lr=cms_lr, tta_lr=tta_lr,
                          tta_every=tta_every)
    except ValueError as e:
        raise click.UsageError(str(e)) from e

    run = load_run(run_dir, resolve_device(device))
    check_finite_weights(run.model, resolve_checkpoint(run.path))  # "hurt, p = 0" from NaN means nothing
    sources = [dict(clip=c) for c in clips] or [dict(store=store, index=index)]
    windows = [load_clips(run, weights=weights, which=which, **src) for src in sources]
    names = [str(c) for c in clips] or [f"{store}[{index}]"]
    baseline = None
    if baseline_dir is not None:
        other = load_run(baseline_dir, run.device)
        check_finite_weights(other.model, resolve_checkpoint(other.path))
        same_features = (other.store["encoder"] == run.store["encoder"]
                         and other.model.config.input_dim == run.model.config.input_dim)
        if not same_features:
            raise StoreMismatchError(f"{baseline_dir}: trained on features of another encoder than {run_dir}")
        baseline = other.model
    start = load_state(init_state, run.model, run.device) if init_state is not None else None

    report, states = adapt(run.model, windows, names, cfg, start=start, carry=carry, baseline=baseline,
                           device=run.device)
    _table(report)
    err.print(report.verdict(), highlight=False, soft_wrap=True)
    result = {"run": str(run_dir), "baseline": str(baseline_dir) if baseline_dir else None, **report.to_dict()}
    if save is not None:
        note = f"hope adapt --method {methods[0]} on {', '.join(names)}"
        save_state(states[methods[0]], run.model, save, note=note)
        err.print(f"adapted state -> {save}", soft_wrap=True)
        result["saved"] = str(save)
    if png is not None:
        adapt_figure(report, png)
        err.print(f"figure -> {png}", soft_wrap=True)
    if as_json:
        click.echo(dumps_report(result))


def _table(report) -> None:
    """Steps as rows, one column per model and method; a window's name only on its first row."""
    table = Table(title="next-step L1 error per step: frozen vs " + ", ".join(report.config.methods))
    columns = report.columns
    table.add_column("clip window", overflow="fold")
    table.add_column("step", justify="right")
    for c in columns:
        table.add_column(report.label(c), justify="right")
    previous = None
    for s in report.steps:
        table.add_row(s.clip if s.clip != previous else "", str(s.step), *(f"{s.errors[c]:.4f}" for c in columns))
        previous = s.clip
    table.add_section()
    table.add_row("mean", "", *(f"{report.mean(c):.4f}" for c in columns), style="bold")
    table.add_row("vs its frozen", "", *(f"{100 * report.change(c):+.3g}%" if c in report.compared else ""
                                         for c in columns))
    table.add_row("p (sign-flip)", "", *(f"{report.p_value(c):.2g}" if c in report.compared else ""
                                         for c in columns))
    table.add_row("verdict", "", *(report.outcome(c) if c in report.compared else "" for c in columns))
    copy = report.mean("copy_last")
    table.add_row("vs copy", "", *("" if c in ("copy_last", "context_mean") or not copy
                                   else f"{100 * (report.mean(c) / copy - 1):+.1f}%" for c in columns))
    err.print(table)
    err.print(report.rule(), highlight=False)
