"""`hope train`: train a predictor on a feature store through a continual-learning sequence.

The model options are made from PredictorConfig's and TitanConfig's fields (one option per
field, so they cannot drift apart); a preset gives the defaults and given options override
them. The data shapes (feature width, patches, action and state size) come from the store.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import types
import typing
from pathlib import Path

import click

from hopecli.commands.help import HopeCommand
from hopecli.commands.options import threads_option, train_compile_option
from hopecli.console import err
from hopecli.model.config import BLOCK_LETTERS, PredictorConfig
from hopecli.model.memory.config import CONV_AXES, KINDS, RECOMPUTES, RULES, TARGETS, TitanConfig
from hopecli.model.presets import PRESETS
from hopecli.train.config import STRATEGIES
from hopecli.train.optim import SCHEDULES

# the preset without --preset: the full-size one on a GPU; on a CPU, where a 43M-parameter
# step takes minutes (and a batch of 16 needed over 24 GB), one sized for it
GPU_PRESET = "hope_phase5"
CPU_PRESET = "hope_tiny"
# set from the store, not the command line
DATA_FIELDS = ("input_dim", "action_dim", "state_dim", "patches_per_step", "grid", "memory")
# TitanConfig fields whose bare names would be ambiguous get a memory- prefix
MEMORY_PREFIXED = ("dim", "heads", "hidden_mult", "kind")
CHOICES = {"kind": KINDS, "update_rule": RULES, "memory_target": TARGETS, "conv_axis": CONV_AXES,
           "recompute": RECOMPUTES}
HELP = {
    "dim": "Width D of the predictor trunk.",
    "pattern": "Block per layer: " + ", ".join(f"{k} = {v}" for k, v in BLOCK_LETTERS.items()) + ".",
    "predict_change": "Predict the change from the input step (output = input + head) instead of the features themselves (V-JEPA 2-AC).",
    "max_frames": "Size of frame_pos_embed / target_pos_embed (longest stream in steps).",
    "drop_path": "Stochastic depth of the last block (linear from 0 at the first).",
    "num_heads": "Attention heads of T blocks.",
    "mlp_ratio": "MLP hidden width of T blocks, in multiples of dim.",
    "qkv_bias": "Bias on the q/k/v projection of T blocks.",
    "chunk_size": "Titan memory chunk in tokens (must divide P + 2); default one frame.",
    "cms_hidden_mults": "CMS level hidden widths in multiples of dim, fast to slow (e.g. 2,2.5,3).",
    "cms_periods": "CMS level update periods in optimizer steps (e.g. 1,4,16).",
    "spatial_mixing": "Token mixing across the patches of each frame in H blocks (phase C of a HOPE block).",
    "heads": "Memory heads: 1 = one full-width memory per box, H = one small MLP per head.",
    "hidden_mult": "Memory MLP hidden width in multiples of the head dim.",
    "kind": "Memory kind of H blocks (L blocks are always linear).",
    "update_rule": "Memory update rule of H blocks: dgd (delta gradient descent) or gd.",
    "static_q": "A plain linear q projection instead of the self-modifying M_q.",
    "memory_target": "What the memory box of H blocks learns: self (its own M(v), HOPE) or value (v; L blocks always).",
    "eta_max": "Upper bound of the per-token learning rate eta, at most 1 (default: 1 for gd, 0.5 for dgd, the largest that keep every write a contraction).",
    "eta_init": "Starting value of eta through its bias (default: half of eta_max).",
    "alpha_init": "Starting value of the per-token retention alpha (through its bias).",
    "checkpoint_chunks": "Recompute memory chunks in the backward instead of storing them.",
    "recompute": "How a compiled memory chunk is recomputed: selective (keeps its solves and wide products, about "
                 "5x the memory of whole for the 6-head memories, whole taking 13% longer) or whole (keeps its inputs "
                 "alone).",
    "conv_size": "Taps of the causal short convolution after the memories' q, k and v (0: none, the seeds' layout).",
    "conv_axis": "Axis of the short convolution: time (each patch's own earlier steps) or sequence (the previous tokens).",
}


def _option_name(field: str, memory: bool) -> str:
    name = f"memory_{field}" if memory and field in MEMORY_PREFIXED else field
    return name.replace("_", "-")


def _tuple_of(kind: type):
    def convert(ctx, param, value):
        if value is None:
            return None
        try:
            return tuple(kind(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of {kind.__name__}") from None
    return convert


def _budget(kind: type):
    """--steps / --epochs: one value for every task, or a comma-separated list, one per task."""
    items = _tuple_of(kind)

    def convert(ctx, param, value):
        values = items(ctx, param, value)
        if values is None:
            return None
        if any(not v > 0 for v in values):
            raise click.BadParameter(f"{value!r}: every budget must be > 0")
        return values[0] if len(values) == 1 else values
    return convert


def _model_fields() -> list[tuple[str, bool, object]]:
    """(field, is a memory field, type) for every field an option sets."""
    out = [(f.name, False, t) for f, t in _hints(PredictorConfig) if f.name not in DATA_FIELDS]
    out += [(f.name, True, t) for f, t in _hints(TitanConfig) if f.name != "dim"]
    return out


def _hints(cls) -> list[tuple[dataclasses.Field, object]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _model_option(field: str, memory: bool, hint) -> click.Option:
    name = _option_name(field, memory)
    kind = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None -> X
        kind = next(a for a in typing.get_args(hint) if a is not type(None))
    help_text = HELP.get(field, f"{'TitanConfig' if memory else 'PredictorConfig'}.{field}.") + " [default: preset]"
    dest = f"model__{'memory__' if memory else ''}{field}"
    if kind is bool:
        return click.Option([f"--{name}/--no-{name}", dest], default=None, help=help_text)
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        return click.Option([f"--{name}", dest], default=None, metavar="X,Y,...",
                            callback=_tuple_of(item), help=help_text)
    if field in CHOICES:
        return click.Option([f"--{name}", dest], type=click.Choice(CHOICES[field]), default=None, help=help_text)
    return click.Option([f"--{name}", dest], type=kind, default=None, help=help_text)


def _model_overrides(values: dict, keep_none: bool = False) -> dict:
    """The model__ entries of `values` (removed from it) as preset_config overrides
    ({"memory": {...}} nested); None means "the preset's value" unless keep_none."""
    overrides: dict = {}
    memory: dict = {}
    for key in [k for k in values if k.startswith("model__")]:
        value = values.pop(key)
        if value is None and not keep_none:
            continue
        if key.startswith("model__memory__"):
            memory[key[len("model__memory__"):]] = value
        else:
            overrides[key[len("model__"):]] = value
    if memory:
        overrides["memory"] = memory
    return overrides


def _dest(dotted: str) -> str:
    """A config file field (model.memory.update_rule, train.optim.lr) -> its option's name."""
    section, _, rest = dotted.partition(".")
    return ("model__" if section == "model" else "") + rest.replace(".", "__")


# when the command line gives one of a pair, the file's value of the other is dropped
EXCLUSIVE = (("steps", "epochs"), ("base_steps", "base_epochs"), ("val_fraction", "val_clips"),
             ("optim__warmup_steps", "optim__warmup_fraction"))


def _apply_config_file(ctx: click.Context, path: Path, kwargs: dict, preset_given: bool) -> tuple[dict, dict]:
    """Fill the options the command line did not give from a --config file.

    Returns the file's sections and its model fields as preset_config overrides (empty
    when --preset was given on the command line: the model then starts from that preset).
    """
    from hopecli.train.configfile import flat_fields, read_config_file

    data = read_config_file(path)
    fields = flat_fields(data)
    unknown = [k for k in fields if _dest(k) not in kwargs]
    if unknown:
        raise click.UsageError(f"{path}: unknown field(s) {', '.join(unknown)}")
    values = {_dest(k): v for k, v in fields.items()}
    on_command_line = {n for n in kwargs
                       if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE}
    for a, b in EXCLUSIVE:
        for given, other in ((a, b), (b, a)):
            if given in on_command_line:
                values.pop(other, None)
    model = _model_overrides(values, keep_none=True)
    for name, value in values.items():
        if name not in on_command_line:
            kwargs[name] = value
    return data, {} if preset_given else model


def _merge(base: dict, top: dict) -> dict:
    out = {**base, **top}
    if "memory" in base and "memory" in top:
        out["memory"] = {**base["memory"], **top["memory"]}
    return out


TRAIN_OPTIONS = [
    click.Option(["--tasks"], default=None, metavar="A,B,...",
                 help="Task labels in training order [default: every label of the store but the base task]."),
    click.Option(["--base-task"], default=None, metavar="NAME",
                 help="A base-training experience on this label first (the earlier pipeline's protocol); it is "
                      "column 0 of R, evaluated after every experience like the tasks."),
    click.Option(["--strategy"], type=click.Choice(STRATEGIES), default="naive", show_default=True,
                 help="naive: one partition after another (base first); joint: all at once, as many "
                      "steps as naive's together; replay: naive plus a reservoir buffer of earlier "
                      "clips (base included) in every batch."),
    click.Option(["--steps"], default=None, metavar="N|N1,N2,...", callback=_budget(int),
                 help="Optimizer steps per task: one number for every task or one per task."),
    click.Option(["--epochs"], default=None, metavar="X|X1,X2,...", callback=_budget(float),
                 help="Epochs per task over its training clips, instead of --steps: one number or one per task."),
    click.Option(["--base-steps"], type=click.IntRange(min=1), default=None,
                 help="Optimizer steps of the base experience [default: the tasks' single --steps/--epochs]."),
    click.Option(["--base-epochs"], type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Epochs of the base experience, instead of --base-steps."),
    click.Option(["--batch-size"], type=click.IntRange(min=1), default=16, show_default=True,
                 help="Global batch (split evenly over torchrun processes)."),
    click.Option(["--val-fraction"], type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
                 show_default=True, help="Share of every partition's videos held out for validation "
                                         "(at least one), drawn with --seed."),
    click.Option(["--val-clips"], type=click.IntRange(min=1), default=None,
                 help="Hold out the last N videos of every partition in store order instead (the earlier pipeline's "
                      "split; an import keeps clip-number order)."),
    click.Option(["--seed"], type=int, default=0, show_default=True,
                 help="Seed of the initialisation, the split, the batch order and the jump targets."),
    click.Option(["--seeds"], default=None, metavar="A,B,...", callback=_tuple_of(int),
                 help="Train one run per seed, into OUT/seed<A>, OUT/seed<B>, ... (and OUT/seeds.json); "
                      "`hope eval OUT` reports their mean with a 95% interval. Use with --val-clips so that "
                      "every seed validates on the same clips."),
    click.Option(["--replay-size"], type=click.IntRange(min=1), default=256, show_default=True,
                 help="Clips in the replay buffer (--strategy replay)."),
    click.Option(["--replay-fraction"], type=click.FloatRange(0, 1, max_open=True), default=0.5,
                 show_default=True, help="Share of every batch drawn from the replay buffer."),
    click.Option(["--horizon"], type=click.IntRange(min=1), default=None,
                 help="Rollout steps of the final per-horizon evaluation [default: T - 1]."),
    click.Option(["--eval-batch-size"], type=click.IntRange(min=1), default=16, show_default=True,
                 help="Clips per batch when evaluating."),
    click.Option(["--log-every"], type=click.IntRange(min=1), default=10, show_default=True,
                 help="Steps between diagnostics / throughput records in metrics.jsonl."),
    click.Option(["--checkpoint-every"], type=click.IntRange(min=0), default=0, show_default=True,
                 help="Steps between periodic checkpoints (0: only after each experience)."),
    click.Option(["--warn-grad-norm"], type=float, default=10.0, show_default=True,
                 help="Warn when the gradient norm passes this."),
    click.Option(["--warn-inner-loss"], type=float, default=100.0, show_default=True,
                 help="Warn when a Titan memory's inner loss passes this."),
    click.Option(["--device"], default="auto", show_default=True,
                 help="auto (GPU when present), cpu, cuda or cuda:N; with --resume, the device to "
                      "continue on (a checkpoint is device-free)."),
    # losses
    click.Option(["--teacher-weight", "loss__teacher_weight"], type=click.FloatRange(min=0), default=1.0,
                 show_default=True, help="Weight of the teacher-forcing loss (steps 1..T-1)."),
    click.Option(["--rollout-weight", "loss__rollout_weight"], type=click.FloatRange(min=0), default=1.0,
                 show_default=True, help="Weight of the autoregressive rollout loss."),
    click.Option(["--rollout-steps", "loss__rollout_steps"], type=click.IntRange(min=1), default=2,
                 show_default=True, help="Steps of the rollout loss."),
    click.Option(["--jump-weight", "loss__jump_weight"], type=click.FloatRange(min=0), default=1.0,
                 show_default=True, help="Weight of the jump loss (step 0 to a random step tau)."),
    click.Option(["--jump-k", "loss__jump_k"], type=click.IntRange(min=1), default=None,
                 help="Draw tau from the last K steps of the clip (the earlier pipeline: 3 of 8), also in the "
                      "jump error of evaluation [default: every step 1..T-1]."),
    # optimizer
    click.Option(["--lr", "optim__lr"], type=click.FloatRange(min=0, min_open=True), default=2.5e-4,
                 show_default=True, help="Peak AdamW learning rate."),
    click.Option(["--schedule", "optim__schedule"], type=click.Choice(SCHEDULES), default="cosine",
                 show_default=True, help="lr schedule of every experience: warm-up then cosine, or warm-up, "
                                         "constant, linear decay (wsd, the earlier pipeline's schedule)."),
    click.Option(["--min-lr-ratio", "optim__min_lr_ratio"], type=click.FloatRange(0, 1), default=0.0,
                 show_default=True, help="The cosine or the decay ends at lr times this."),
    click.Option(["--warmup-steps", "optim__warmup_steps"], type=click.IntRange(min=0), default=10,
                 show_default=True, help="Linear warm-up steps at the start of every experience."),
    click.Option(["--warmup-fraction", "optim__warmup_fraction"], type=click.FloatRange(0, 1), default=None,
                 help="Warm-up as this share of every experience's steps, instead of --warmup-steps."),
    click.Option(["--decay-fraction", "optim__decay_fraction"], type=click.FloatRange(0, 1), default=0.1,
                 show_default=True, help="wsd: share of every experience's steps spent in the linear decay."),
    click.Option(["--weight-decay", "optim__weight_decay"], type=click.FloatRange(min=0), default=0.04,
                 show_default=True, help="AdamW weight decay (matrices only)."),
    click.Option(["--grad-clip", "optim__grad_clip"], type=click.FloatRange(min=0), default=1.0,
                 show_default=True, help="Max global gradient norm (0: no clipping)."),
    click.Option(["--lr-scale-titan", "optim__lr_scale_titan"], type=click.FloatRange(min=0), default=0.3,
                 show_default=True, help="lr multiplier of the Titan memory parameters."),
    click.Option(["--lr-scale-cms", "optim__lr_scale_cms"], type=click.FloatRange(min=0), default=1.0,
                 show_default=True, help="lr multiplier of the CMS levels."),
    click.Option(["--lr-scale-other", "optim__lr_scale_other"], type=click.FloatRange(min=0), default=1.0,
                 show_default=True, help="lr multiplier of all other parameters."),
]


def _train_config(kwargs: dict):
    from hopecli.train.config import TrainConfig

    sections: dict[str, dict] = {"loss": {}, "optim": {}}
    top = {}
    for key, value in kwargs.items():
        section, sep, field = key.partition("__")
        if sep:
            sections[section][field] = value
        else:
            top[key] = value
    if isinstance(top["tasks"], str):
        top["tasks"] = tuple(t.strip() for t in top["tasks"].split(","))
    return TrainConfig(**top, **sections)


def _given(ctx: click.Context, names) -> list[str]:
    """The flags of the options among `names` that the command line set."""
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    return [flags[n] for n in names if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]


EXAMPLES = [
    ("the CPU-sized HOPE predictor on three friction regimes, one after another, under three seeds "
     "(runs/hope/seed0..seed2, for `hope eval runs/hope`); the last 3 clips of each held out",
     "hope train demo_out/sample.zarr --out runs/hope --preset hope_tiny --tasks low,mid,high "
     "--steps 100 --batch-size 8 --lr 6e-3 --val-clips 3 --seeds 0,1,2"),
    ("the earlier pipeline's study: a base experience, then five physics shifts, the last 100 clips of each held out",
     "hope train study.zarr --out runs/hope --base-task base "
     "--tasks scaling,dissipation,discretization,kinematics,compositional --base-epochs 40 --epochs 10 "
     "--val-clips 100 --jump-k 3 --schedule wsd --warmup-fraction 0.1 --decay-fraction 0.1"),
    ("repeat a run from its saved configuration with another seed (flags override the file)",
     "hope train --config runs/hope/seed0/config.json --out runs/hope7 --seed 7"),
]

# the --help panels, in order; every option of the command belongs to one (a test checks)
PANELS = {
    "Continual learning": ["--tasks", "--base-task", "--strategy", "--steps", "--epochs", "--base-steps",
                           "--base-epochs", "--replay-size", "--replay-fraction"],
    "Data": ["--batch-size", "--val-fraction", "--val-clips", "--seed", "--seeds", "--eval-batch-size", "--horizon"],
    "Model": ["--preset"],  # + one option per PredictorConfig / TitanConfig field, added below
    "Optimisation": ["--teacher-weight", "--rollout-weight", "--rollout-steps", "--jump-weight", "--jump-k",
                     "--lr", "--schedule", "--min-lr-ratio", "--warmup-steps", "--warmup-fraction",
                     "--decay-fraction", "--weight-decay", "--grad-clip", "--lr-scale-titan", "--lr-scale-cms",
                     "--lr-scale-other"],
    "Output": ["--out", "--config", "--print-config", "--resume", "--device", "--threads", "--compile", "--log-every",
               "--checkpoint-every", "--warn-grad-norm", "--warn-inner-loss", "--help"],
}


@click.command(cls=HopeCommand, examples=EXAMPLES, see_also=["extract", "import", "eval", "profile"])
@click.argument("store", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder to write (config, metrics, checkpoints, results). Required.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML or JSON file of options in config.json's form (preset, store, model, train "
                   "sections), e.g. an earlier run's config.json to repeat it; command-line flags override it, "
                   "and --preset on the command line replaces its model section.")
@click.option("--print-config", is_flag=True,
              help="Print the fully resolved configuration as JSON (usable as --config) and exit.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint "
              "with its saved configuration.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None, metavar="NAME",
              help=f"Predictor preset, one of {', '.join(sorted(PRESETS))}; the model options below override "
                   "its fields. vit_tiny with --pattern TTTTT "
                   "is the ViT with hope_tiny's parameter count (the demo's baseline). [default: hope_phase5 "
                   "on a GPU, hope_tiny on a CPU]")
@threads_option
@train_compile_option
def command(store, run_dir, config_file, print_config, resume, preset, **kwargs):
    """Train a predictor on the features in STORE.

    The clips of STORE are grouped into partitions by their task label. Training goes
    through them as a sequence of experiences: an optional --base-task first, then the
    --tasks one after another (--strategy naive or replay), or all of them at once
    (joint), each with its own budget (--steps or --epochs: one value, or one per task).
    After every experience the model is scored on held-out clips of every partition,
    later ones included; this fills one row of the error matrix (row: after which
    experience, column: which partition) and a checkpoint is written.

    Three losses, each an L1 distance to layer-normed target features: teacher forcing
    (predict every next step from the true steps before it), an autoregressive rollout
    over a few steps, and jump prediction (from the first step straight to a later one).
    Options can come from a --config file (YAML or JSON, e.g. an earlier run's
    config.json); flags given on the command line override it. Under `torchrun
    --nproc_per_node N` the same command trains with DDP.
    """
    from hopecli.data.store import FeatureStore
    from hopecli.errors import HopeError
    from hopecli.model.presets import preset_config
    from hopecli.runs.config import read_run_config
    from hopecli.runs.seeds import read_seeds, seed_runs
    from hopecli.train.continual import train
    from hopecli.train.data import clip_shape
    from hopecli.train.distributed import init_from_env, resolve_device, shutdown
    from hopecli.train.interrupt import TrainingInterrupted

    ctx = click.get_current_context()
    seeds = kwargs.pop("seeds")
    given = [flag for flag in _given(ctx, ["preset", "config_file", "print_config", "seeds", *kwargs])
             if flag != "--device"]
    if run_dir is None and not print_config:
        raise click.UsageError("Missing option '--out'.")
    if seeds is not None and _given(ctx, ["seed"]):
        raise click.UsageError("give one of --seed and --seeds")
    file_data, file_model = {}, {}
    if config_file is not None and not resume:
        file_data, file_model = _apply_config_file(ctx, config_file, kwargs, preset is not None)
    label = preset
    if preset is None and file_data.get("preset") is not None:
        preset = label = file_data["preset"]
        if preset not in PRESETS:
            raise click.UsageError(f"{config_file}: unknown preset {preset!r}; "
                                   f"choose one of {', '.join(sorted(PRESETS))}")
    elif preset is None and file_model:  # a config.json from before runs recorded their preset
        preset, label = CPU_PRESET, f"the model of {config_file}"
    if store is None and not resume:
        from hopecli.train.configfile import store_path

        store = store_path(file_data)
        if store is None:
            raise click.UsageError("Missing argument 'STORE' (or a --config that names a store).")
    overrides = _merge(file_model, _model_overrides(kwargs))
    if resume:
        if given:
            raise click.UsageError(f"--resume continues with the saved configuration; drop {', '.join(given)}")
        seeds = read_seeds(run_dir) if run_dir is not None else None
        started = seed_runs(run_dir) if seeds is not None else [run_dir]
        if not started:
            raise click.ClickException(f"{run_dir}: none of its seed runs has started; train it anew")
        saved = read_run_config(started[0])
        model_cfg, train_cfg = saved.model, saved.train
        label = saved.raw.get("preset")
        if _given(ctx, ["device"]):  # a checkpoint is device-free: resume anywhere
            train_cfg = dataclasses.replace(train_cfg, device=kwargs["device"])
        store = store or saved.store["path"]
    else:
        if (kwargs["steps"] is None) == (kwargs["epochs"] is None):
            raise click.UsageError("give one of --steps and --epochs (per task)")
        both = _given(ctx, ["val_fraction", "val_clips"])
        if len(both) == 2:
            raise click.UsageError("give one of --val-fraction and --val-clips")
        train_cfg = _checked(lambda: _train_config(kwargs))
    try:
        device = resolve_device(train_cfg.device)  # before anything is written
    except HopeError as e:
        hint = (f"; the run was saved with device {train_cfg.device!r}: add --device cpu (or auto) to "
                "--resume on this machine" if resume else "")
        raise click.ClickException(f"{e}{hint}") from None
    if preset is None and not resume:  # the full-size preset on a GPU, a CPU-sized one on a CPU
        preset = label = CPU_PRESET if device.type == "cpu" else GPU_PRESET
        if device.type == "cpu":
            err.print(f"no --preset: {CPU_PRESET}, sized for the CPU (--preset {GPU_PRESET} trains the "
                      "43M-parameter predictor the studies compare, at minutes a step on a CPU)",
                      highlight=False)
    fs = FeatureStore.open(store)
    if not resume:
        attrs = fs.attrs
        model_cfg = _checked(lambda: preset_config(
            preset, input_dim=clip_shape(fs)[2], action_dim=attrs["action_dim"],
            state_dim=attrs["state_dim"], patches_per_step=attrs["patches_per_step"],
            grid=tuple(attrs["grid"]), **overrides))
    if print_config:
        resolved = {"preset": label if label in PRESETS else None, "store": {"path": str(Path(fs.path).resolve())},
                    "model": model_cfg.to_dict(), "train": train_cfg.to_dict()}
        click.echo(json.dumps(resolved, indent=2))
        return
    world = init_from_env(train_cfg.device)
    resume_command = shlex.join(["hope", "train", str(store), "--out", str(run_dir), "--resume"])
    if world.is_main and not resume:
        _announce(label, model_cfg, fs, train_cfg, world)
    recorded = label if label in PRESETS else None
    try:
        if seeds is not None:
            from hopecli.train.seeds import train_seeds

            def starting(seed: int, run: Path) -> None:
                if world.is_main:
                    err.print(f"[bold]seed {seed}[/]: {run}", highlight=False)

            results = train_seeds(fs, run_dir, model_cfg, train_cfg, None if resume else list(seeds),
                                  resume=resume, world=world, preset=recorded, on_start=starting)
            experiences = len(results[0]["experiences"])
        else:
            results = train(fs, run_dir, model_cfg, train_cfg, resume=resume, world=world, preset=recorded)
            experiences = len(results["experiences"])
    except TrainingInterrupted as e:  # Ctrl-C / SIGTERM: the step reached is checkpointed
        if world.is_main:
            err.print(f"{e}; continue with: {resume_command}", highlight=False, soft_wrap=True)
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:  # a second signal: aborted at once
        if world.is_main:
            err.print(f"aborted; `{resume_command}` continues from the last checkpoint",
                      highlight=False, soft_wrap=True)
        raise SystemExit(130) from None
    finally:
        shutdown(world)
    if world.is_main:
        runs = f" x {len(results)} seeds" if seeds is not None else ""
        err.print(f"[green]done:[/] {run_dir} ({experiences} experience(s){runs}); "
                  f"`hope eval {run_dir}` shows the metrics")


def _announce(preset: str, model_cfg, store, train_cfg, world) -> None:
    """Which preset and how many parameters; for a large model on a CPU, the time per step."""
    from hopecli.train import estimate as est
    from hopecli.train.continual import plan_protocol

    found = est.estimate(model_cfg, store, train_cfg, world.device)
    preset = f"preset {preset}" if preset in PRESETS else preset
    err.print(f"{preset}: {model_cfg.pattern} predictor, {found.parameters:,} parameters", highlight=False)
    if found.seconds_per_step is not None:
        steps = sum(e.steps for e in plan_protocol(store, train_cfg, world).experiences)
        err.print(f"[yellow]warning:[/] {preset} has {found.parameters:,} parameters (over "
                  f"{est.LARGE_ON_CPU:,}) and will train on the CPU: one step of batch {train_cfg.batch_size} "
                  f"takes about {est.duration(found.seconds_per_step)} (one clip timed), about "
                  f"{est.duration(found.seconds_per_step * steps)} for the {steps:,} steps of this run; a GPU "
                  f"or a CPU-sized preset ({', '.join(est.SMALL_PRESETS)}) is much faster", highlight=False)


def _checked(make):
    """Run a config constructor, turning its ValueError into a usage error."""
    try:
        return make()
    except ValueError as e:
        raise click.UsageError(str(e)) from None


for _field, _memory, _hint in _model_fields():
    command.params.append(_model_option(_field, _memory, _hint))
    PANELS["Model"].append(command.params[-1].opts[0])
command.params.extend(TRAIN_OPTIONS)
command.set_option_panels(list(PANELS.items()))
