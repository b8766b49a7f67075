"""`hope extract`: videos + sidecars -> frozen V-JEPA 2 encoder -> Zarr feature store."""

from __future__ import annotations

from pathlib import Path

import click

from hopecli.commands.help import HopeCommand
from hopecli.data.compression import COMPRESSIONS, DEFAULT_COMPRESSION
from hopecli.commands.options import threads_option
from hopecli.commands.summary import clip_progress, report_writes
from hopecli.console import err


EXAMPLES = [
    ("every clip under sample_data/ with the embedded encoder (random features, for trying things out)",
     "hope extract sample_data --out demo_out/sample.zarr"),
    ("real V-JEPA 2 ViT-L features from the official checkpoint (facebookresearch/vjepa2, vitl.pt) on a GPU",
     "hope extract videos/ --out clips.zarr --weights checkpoints/vitl.pt --which target_encoder --device cuda"),
    ("paths from another program, one per line, frame by frame as V-JEPA 2-AC",
     "find videos -name '*.mp4' | hope extract - --out clips.zarr --weights vjepa2-vitl-fpc64-256/ --time-mode frame"),
]


# the --help panels, in order; every option belongs to one (tests/test_help.py checks)
PANELS = [
    ("Encoder", ["--weights", "--which", "--time-mode"]),
    ("Clips", ["--frames", "--stride", "--target-fps", "--long-clips", "--allow-skips"]),
    ("Output", ["--out", "--compression", "--json"]),
    ("Resources", ["--batch-size", "--device", "--shard", "--threads", "--help"]),
]


@click.command(cls=HopeCommand, examples=EXAMPLES, see_also=["synth", "import", "train"],
               option_panels=PANELS)
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Feature store to create, resume or extend (a .zarr folder).")
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None,
              help="Encoder weights: official .pt, HF vjepa2 folder or own safetensors. "
                   "Default: the embedded encoder with random weights (demo features).")
@click.option("--which", type=click.Choice(["encoder", "target_encoder"]),
              default="target_encoder", show_default=True,
              help="Which encoder of an official checkpoint to use.")
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Frames per clip window [default: the encoder's, 16].")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Take every STRIDE-th frame [default: 1].")
@click.option("--target-fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Pick the stride from each video's frame rate instead of --stride.")
@click.option("--long-clips", type=click.Choice(["windows", "cut"]), default="windows",
              show_default=True,
              help="A video longer than one window: all consecutive windows, or the first.")
@click.option("--time-mode", type=click.Choice(["tubelet", "frame"]), default="tubelet",
              show_default=True,
              help="tubelet: T = frames/2 steps; frame: each frame encoded alone, T = frames.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Clips per encoder batch.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="auto: CUDA (bf16 autocast) when present, else CPU.")
@click.option("--shard", default=None, metavar="I/N",
              help="Rank I of N writers sharing one store (e.g. one per GPU or machine): take "
                   "every N-th video of PATHS from the I-th, so the ranks of one command line "
                   "write disjoint clips; run them at once, each with its own I.")
@click.option("--compression", type=click.Choice(COMPRESSIONS), default=DEFAULT_COMPRESSION, show_default=True,
              help="Codec of a new store's features: none reads fastest (zstd saves about 8% on "
                   "V-JEPA features, bench/store.py); an existing store keeps its own.")
@click.option("--allow-skips", is_flag=True,
              help="Exit 0 even when some files were skipped.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@threads_option
def command(paths, out, weights, which, frames, stride, target_fps, long_clips, time_mode,
            batch_size, device, shard, compression, allow_skips, as_json):
    """Encode video clips into a feature store with a frozen V-JEPA 2 encoder.

    PATHS are video files, folders (searched recursively) or - to read newline-separated
    paths from stdin. Each clip.mp4 needs clip.npz beside it with actions [F, A] and
    states [F, S]; its task label comes from the sidecar's `task`. Bad files are skipped
    with one line each and the rest are extracted; the exit code is non-zero when any file
    was skipped unless --allow-skips is given. An interrupted run resumes when re-run.
    Several runs may write one store at once (other PATHS, or --shard I/N ranks).
    """
    from hopecli.data.video import list_videos
    from hopecli.encoder import load_encoder
    from hopecli.errors import InputError
    from hopecli.extract import RANDOM_NOTE, ExtractConfig, Skipped, extract, parse_shard

    if stride is not None and target_fps is not None:
        raise click.UsageError("give --stride or --target-fps, not both")
    try:
        shard = parse_shard(shard) if shard is not None else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--shard") from None
    config = ExtractConfig(weights=str(weights) if weights else None, which=which,
                           frames=frames, stride=stride, target_fps=target_fps,
                           long_clips=long_clips, time_mode=time_mode,
                           batch_size=batch_size, device=device, shard=shard, compression=compression)
    empty: list[Skipped] = []  # folders without a video, broken symlinks: skipped inputs
    videos = list_videos(paths, on_empty=lambda folder: empty.append(
        Skipped(str(folder), f"{folder}: no videos in this folder")),
        on_broken=lambda link, reason: empty.append(Skipped(str(link), reason)))
    if not videos:
        broken = [s.reason for s in empty if not s.reason.endswith("no videos in this folder")]
        raise InputError(broken[0] if len(broken) == 1 else f"no videos found in {', '.join(paths)}"
                         + (f" ({len(broken)} broken symlinks, e.g. {broken[0]})" if broken else ""))
    encoder = load_encoder(config.weights, which=config.which)
    if encoder.info.get("random_features"):
        err.print(f"[yellow]warning:[/] no --weights given: {RANDOM_NOTE}", soft_wrap=True)

    with clip_progress("extract", out) as callbacks:
        for skipped in empty:
            callbacks["on_skip"](skipped)
        result = extract(videos, out, config, encoder=encoder, **callbacks)
    result.skipped[:0] = empty

    encoder_label = result.encoder["name"] + (
        " (random features)" if result.encoder.get("random_features") else "")
    report_writes(f"hope extract -> {out}", result,
                  [("encoder", encoder_label), ("device", result.device)],
                  as_json=as_json, allow_skips=allow_skips, unit="file")
