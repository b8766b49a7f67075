"""`hope adapt`: test-time memory adaptation on new clips, against the same model frozen."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from hopecli.console import err


@click.command()
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True,
              help="Run folder written by `hope train`.")
@click.option("--clip", "clips", type=click.Path(path_type=Path), multiple=True,
              help="A video with its .npz sidecar; repeat for several clips, streamed in order.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Read the clip from a feature store made with the run's encoder (with --index).")
@click.option("--index", type=click.IntRange(min=0), default=None, help="Clip index in --store.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Encoder weights for --clip when the run's store was not made with the embedded "
                   "default encoder; their checksum must match the store's.")
@click.option("--which", type=click.Choice(["encoder", "target_encoder"]), default="target_encoder",
              show_default=True, help="Which encoder of an official checkpoint --weights holds.")
@click.option("--cms-online", is_flag=True,
              help="The CMS levels also learn online from the next-step error, each at its period in frames.")
@click.option("--cms-lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Online CMS step: typical change per weight per level update.")
@click.option("--baseline", "baseline_dir", type=click.Path(path_type=Path), default=None,
              help="A ViT baseline run on the same features, streamed beside for comparison.")
@click.option("--init-state", type=click.Path(path_type=Path), default=None,
              help="Start from a state written by --save (instead of the trained model as it is).")
@click.option("--carry", is_flag=True,
              help="With several --clip, continue the adapted state from one clip to the next.")
@click.option("--save", type=click.Path(path_type=Path), default=None,
              help="Write the adapted state after the last clip (safetensors) for --init-state.")
@click.option("--png", type=click.Path(path_type=Path), default=None,
              help="Figure of the next-step error per step, adapting vs frozen (vs baseline).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def command(run_dir, clips, store, index, weights, which, cms_online, cms_lr, baseline_dir, init_state,
            carry, save, png, device, as_json):
    """Stream new clips through a trained predictor whose memories adapt in context.

    Each step predicts the next; the adapting model's Titan memories write themselves as
    they read (and, with --cms-online, its CMS levels learn from the next-step error).
    The same model with memory updates frozen runs on the same steps, and the table
    says whether adaptation lowered the mean next-step error.
    """
    from hopecli.adapt import AdaptConfig, adapt, adapt_figure, load_state, save_state
    from hopecli.errors import StoreMismatchError
    from hopecli.extract import resolve_device
    from hopecli.rollout import load_clips, load_run

    if bool(clips) == (store is not None):
        raise click.UsageError("give --clip VIDEO (repeatable) or --store STORE --index I")
    if store is not None and index is None:
        raise click.UsageError("--store needs --index")
    if carry and len(clips) < 2:
        raise click.UsageError("--carry continues the state across several --clip; give at least two")

    run = load_run(run_dir, resolve_device(device))
    sources = [dict(clip=c) for c in clips] or [dict(store=store, index=index)]
    windows = [load_clips(run, weights=weights, which=which, **src) for src in sources]
    names = [str(c) for c in clips] or [f"{store}[{index}]"]
    baseline = None
    if baseline_dir is not None:
        other = load_run(baseline_dir, run.device)
        same_features = (other.store["encoder"] == run.store["encoder"]
                         and other.model.config.input_dim == run.model.config.input_dim)
        if not same_features:
            raise StoreMismatchError(f"{baseline_dir}: trained on features of another encoder than {run_dir}")
        baseline = other.model
    start = load_state(init_state, run.model, run.device) if init_state is not None else None

    report, state = adapt(run.model, windows, names, AdaptConfig(cms_online, cms_lr), start=start,
                          carry=carry, baseline=baseline, device=run.device)
    _table(report, baseline is not None)
    err.print(report.verdict(), highlight=False, soft_wrap=True)
    result = {"run": str(run_dir), "baseline": str(baseline_dir) if baseline_dir else None, **report.to_dict()}
    if save is not None:
        save_state(state, run.model, save, note=f"hope adapt on {', '.join(names)}")
        err.print(f"adapted state -> {save}", soft_wrap=True)
        result["saved"] = str(save)
    if png is not None:
        adapt_figure(report, png)
        err.print(f"figure -> {png}", soft_wrap=True)
    if as_json:
        click.echo(json.dumps(result, indent=2))


def _table(report, with_baseline: bool) -> None:
    title = "next-step L1 error per step: adapting" + (" (+ CMS online)" if report.cms_online else "")
    table = Table(title=title + " vs memory frozen")
    for name in ("clip window", "step", "adapting", "frozen", "adapting - frozen"):
        table.add_column(name, justify="right")
    if with_baseline:
        table.add_column("ViT baseline", justify="right")
    for s in report.steps:
        row = [s.clip, str(s.step), f"{s.adapting:.4f}", f"{s.frozen:.4f}", f"{s.adapting - s.frozen:+.4f}"]
        if with_baseline:
            row.append(f"{s.baseline:.4f}")
        table.add_row(*row)
    means = ["mean", "", f"{report.mean('adapting'):.4f}", f"{report.mean('frozen'):.4f}",
             f"{report.mean('adapting') - report.mean('frozen'):+.4f}"]
    if with_baseline:
        means.append(f"{report.mean('baseline'):.4f}")
    table.add_row(*means, style="bold")
    err.print(table)
