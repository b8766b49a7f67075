"""`hope import`: pre-encoded clips of the seeds' earlier pipeline -> Zarr feature store."""

from __future__ import annotations

from pathlib import Path

import click

from hopecli.commands.help import HopeCommand
from hopecli.data.compression import COMPRESSIONS, DEFAULT_COMPRESSION
from hopecli.commands.options import threads_option
from hopecli.commands.summary import clip_progress, report_writes
from hopecli.console import err


def _tasks(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]):
    from hopecli.importer import TaskRange

    try:
        return tuple(TaskRange.parse(v) for v in values)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


EXAMPLES = [
    ("the earlier pipeline's pre-encoded clips with their task partitions as clip index ranges",
     "hope import /data/clips --out clips.zarr --task base=0:5000 --task scaling_shift=5000:6000"),
    ("one-action-per-frame sidecars averaged onto the tubelet steps, a summary as JSON",
     "hope import /data/clips --out clips.zarr --action-mode mean --json > import.json"),
]


# the --help panels, in order; every option belongs to one (tests/test_help.py checks)
PANELS = [
    ("Input", ["--feature-map", "--patches-per-step", "--task", "--action-mode", "--allow-skips"]),
    ("Output", ["--out", "--compression", "--json", "--threads", "--help"]),
]


@click.command(cls=HopeCommand, examples=EXAMPLES, see_also=["extract", "train"],
               option_panels=PANELS)
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Feature store to create or resume (a .zarr folder).")
@click.option("--feature-map", default="vjepa2_vitl16", show_default=True,
              help="Name of the feature_maps/<NAME>.npy file in each clip folder.")
@click.option("--patches-per-step", type=click.IntRange(min=1), default=None,
              help="Patches per step N; needed for flattened [T*N, D] feature maps.")
@click.option("--task", "tasks", multiple=True, callback=_tasks, metavar="NAME=START:END",
              help="Label clips numbered START <= XXXXX < END as task NAME (repeatable).")
@click.option("--action-mode", type=click.Choice(["first", "mean"]), default="first",
              show_default=True,
              help="first: the action at original index 1 is step 0's, the rest zero (their "
                   "rule); mean: each step the mean of its two per-frame actions.")
@click.option("--compression", type=click.Choice(COMPRESSIONS), default=DEFAULT_COMPRESSION, show_default=True,
              help="Codec of a new store's features: none reads fastest (zstd saves about 8% on "
                   "V-JEPA features, bench/store.py); an existing store keeps its own.")
@click.option("--allow-skips", is_flag=True, help="Exit 0 even when some clips were skipped.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@threads_option
def command(source, out, feature_map, patches_per_step, tasks, action_mode, compression, allow_skips, as_json):
    """Import pre-encoded clips into a feature store, without re-encoding.

    SOURCE holds the earlier pipeline's clip folders:
    clip_XXXXX/feature_maps/NAME.npy ([T, N, D], [T*N, D] or [T, H, W, D] V-JEPA 2
    tubelet features) and clip_XXXXX/actions_states/actions.npy ([T_original, A]).
    States are zeros (state_dim = A); extrinsics.npy is counted, not stored. Bad clips
    (unloadable, misshapen, NaN) are skipped with one line each and the rest imported;
    the exit code is non-zero when any clip was skipped unless --allow-skips is given.
    An interrupted import resumes when re-run.
    """
    from hopecli.importer import ImportConfig, import_clips

    try:
        config = ImportConfig(feature_map=feature_map, patches_per_step=patches_per_step,
                              tasks=tasks, action_mode=action_mode, compression=compression)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    with clip_progress("import", out) as callbacks:
        result = import_clips(source, out, config, **callbacks)

    if result.unlabelled:
        err.print(f"[yellow]warning:[/] {result.unlabelled} clip(s) lie outside every --task "
                  'range; their task label is ""', highlight=False, soft_wrap=True)
    rows = [("encoder", f"imported:{feature_map}"), ("frames per clip", str(result.frames_per_clip))]
    rows += [(f"task {name}", str(count)) for name, count in result.tasks.items()]
    rows.append(("with extrinsics", f"{result.with_extrinsics} (not stored)"))
    report_writes(f"hope import -> {out}", result, rows, as_json=as_json, allow_skips=allow_skips, unit="clip")
