"""`hope train`: train a predictor on a feature store through a continual-learning sequence.

The model options are made from PredictorConfig's and TitanConfig's fields (one option per
field, so they cannot drift apart); a preset gives the defaults and given options override
them. The data shapes (feature width, patches, action and state size) come from the store.
"""

from __future__ import annotations

import dataclasses
import shlex
import types
import typing
from pathlib import Path

import click

from hopecli.console import err
from hopecli.model.config import BLOCK_LETTERS, PredictorConfig
from hopecli.model.memory.config import KINDS, RULES, TARGETS, TitanConfig
from hopecli.model.presets import PRESETS
from hopecli.train.config import STRATEGIES
from hopecli.train.optim import SCHEDULES

# set from the store, not the command line
DATA_FIELDS = ("input_dim", "action_dim", "state_dim", "patches_per_step", "grid", "memory")
# TitanConfig fields whose bare names would be ambiguous get a memory- prefix
MEMORY_PREFIXED = ("dim", "heads", "hidden_mult", "kind")
CHOICES = {"kind": KINDS, "update_rule": RULES, "memory_target": TARGETS}
HELP = {
    "dim": "Width D of the predictor trunk.",
    "pattern": "Block per layer: " + ", ".join(f"{k} = {v}" for k, v in BLOCK_LETTERS.items()) + ".",
    "max_frames": "Size of frame_pos_embed / target_pos_embed (longest stream in steps).",
    "drop_path": "Stochastic depth of the last block (linear from 0 at the first).",
    "num_heads": "Attention heads of T blocks.",
    "mlp_ratio": "MLP hidden width of T blocks, in multiples of dim.",
    "qkv_bias": "Bias on the q/k/v projection of T blocks.",
    "chunk_size": "Titan memory chunk in tokens (must divide P + 2); default one frame.",
    "cms_hidden_mults": "CMS level hidden widths in multiples of dim, fast to slow (e.g. 2,2.5,3).",
    "cms_periods": "CMS level update periods in optimizer steps (e.g. 1,4,16).",
    "spatial_mixing": "Per-frame token mixing (phase C) in H blocks.",
    "heads": "Memory heads: 1 = one full-width memory per box, H = one small MLP per head.",
    "hidden_mult": "Memory MLP hidden width in multiples of the head dim.",
    "kind": "Memory kind of H blocks (L blocks are always linear).",
    "update_rule": "Memory update rule of H blocks: dgd (delta gradient descent) or gd.",
    "static_q": "A plain linear q projection instead of the self-modifying M_q.",
    "memory_target": "What the memory box of H blocks learns: self (its own M(v), HOPE) or value (v; L blocks always).",
    "eta_max": "Upper bound of the per-token learning rate eta (<= 1; every write is a contraction there).",
    "eta_init": "Starting value of eta (through its bias).",
    "alpha_init": "Starting value of the per-token retention alpha (through its bias).",
    "checkpoint_chunks": "Recompute memory chunks in the backward instead of storing them.",
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


def _model_overrides(kwargs: dict) -> dict:
    """The given model options as preset_config overrides ({"memory": {...}} nested)."""
    overrides: dict = {}
    memory: dict = {}
    for key in [k for k in kwargs if k.startswith("model__")]:
        value = kwargs.pop(key)
        if value is None:
            continue
        if key.startswith("model__memory__"):
            memory[key[len("model__memory__"):]] = value
        else:
            overrides[key[len("model__"):]] = value
    if memory:
        overrides["memory"] = memory
    return overrides


TRAIN_OPTIONS = [
    click.Option(["--tasks"], default=None, metavar="A,B,...",
                 help="Task labels in training order [default: every label of the store but the base task]."),
    click.Option(["--base-task"], default=None, metavar="NAME",
                 help="A base-training experience on this label first (the seeds' protocol); it is "
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
                 help="Hold out the last N videos of every partition in store order instead (the seeds' "
                      "split; an import keeps clip-number order)."),
    click.Option(["--seed"], type=int, default=0, show_default=True,
                 help="Seed of the initialisation, the split, the batch order and the jump targets."),
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
                 help="Draw tau from the last K steps of the clip (the seeds: 3 of 8), also in the "
                      "jump error of evaluation [default: every step 1..T-1]."),
    # optimizer
    click.Option(["--lr", "optim__lr"], type=click.FloatRange(min=0, min_open=True), default=2.5e-4,
                 show_default=True, help="Peak AdamW learning rate."),
    click.Option(["--schedule", "optim__schedule"], type=click.Choice(SCHEDULES), default="cosine",
                 show_default=True, help="lr schedule of every experience: warm-up then cosine, or warm-up, "
                                         "constant, linear decay (wsd, the seeds' schedule)."),
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
    if top["tasks"] is not None:
        top["tasks"] = tuple(t.strip() for t in top["tasks"].split(","))
    return TrainConfig(**top, **sections)


def _given(ctx: click.Context, names) -> list[str]:
    """The flags of the options among `names` that the command line set."""
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    return [flags[n] for n in names if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]


@click.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder to write (config, metrics, checkpoints, results).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint "
              "with its saved configuration.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="hope_phase5", show_default=True,
              help="Predictor preset; the model options below override its fields.")
def command(store, run_dir, resume, preset, **kwargs):
    """Train a predictor on the features in STORE.

    \b
    Partitions are store task labels: an optional --base-task, trained first, then the
    --tasks one after another (--strategy naive, or replay), each with its own budget
    (--base-steps/--base-epochs, and --steps/--epochs with one value or one per task),
    or all at once (joint). After every experience the model is evaluated on fixed
    held-out clips of every partition, future ones too (--val-clips N: the last N of
    each, as the seeds; or --val-fraction), giving a row of the error matrices R
    (teacher-forcing and jump error, a column per partition); a checkpoint follows each
    experience. Losses: teacher forcing over the T-1 next steps, autoregressive rollout
    and jump prediction (tau from --jump-k last steps), L1 against layer-normed
    targets, weighted by --teacher-weight, --rollout-weight, --jump-weight. The lr
    follows --schedule cosine or wsd (warm-up, constant, decay by fractions of each
    experience). Under `torchrun --nproc_per_node N` the same command trains with DDP.

    \b
    The seeds' study (base, then five shifts), e.g.:
      hope train study.zarr --out runs/hope --base-task base \\
        --tasks scaling,dissipation,discretization,kinematics,compositional \\
        --base-epochs 40 --epochs 10 --val-clips 100 --rollout-weight 0 --jump-k 3 \\
        --schedule wsd --warmup-fraction 0.1 --decay-fraction 0.1
    """
    from hopecli.data.store import FeatureStore
    from hopecli.errors import HopeError
    from hopecli.model.presets import preset_config
    from hopecli.train.continual import train
    from hopecli.train.data import clip_shape
    from hopecli.train.distributed import init_from_env, resolve_device, shutdown
    from hopecli.train.interrupt import TrainingInterrupted
    from hopecli.train.runconfig import read_run_config

    ctx = click.get_current_context()
    given = [flag for flag in _given(ctx, ["preset", *kwargs]) if flag != "--device"]
    overrides = _model_overrides(kwargs)
    if resume:
        if given:
            raise click.UsageError(f"--resume continues with the saved configuration; drop {', '.join(given)}")
        saved = read_run_config(run_dir)
        model_cfg, train_cfg = saved.model, saved.train
        if _given(ctx, ["device"]):  # a checkpoint is device-free: resume anywhere
            train_cfg = dataclasses.replace(train_cfg, device=kwargs["device"])
    else:
        if (kwargs["steps"] is None) == (kwargs["epochs"] is None):
            raise click.UsageError("give one of --steps and --epochs (per task)")
        both = _given(ctx, ["val_fraction", "val_clips"])
        if len(both) == 2:
            raise click.UsageError("give one of --val-fraction and --val-clips")
        train_cfg = _checked(lambda: _train_config(kwargs))
    try:
        resolve_device(train_cfg.device)  # before anything is written
    except HopeError as e:
        hint = (f"; the run was saved with device {train_cfg.device!r}: add --device cpu (or auto) to "
                "--resume on this machine" if resume else "")
        raise click.ClickException(f"{e}{hint}") from None
    fs = FeatureStore.open(store)
    if not resume:
        attrs = fs.attrs
        model_cfg = _checked(lambda: preset_config(
            preset, input_dim=clip_shape(fs)[2], action_dim=attrs["action_dim"],
            state_dim=attrs["state_dim"], patches_per_step=attrs["patches_per_step"],
            grid=tuple(attrs["grid"]), **overrides))
    world = init_from_env(train_cfg.device)
    resume_command = shlex.join(["hope", "train", str(store), "--out", str(run_dir), "--resume"])
    try:
        results = train(fs, run_dir, model_cfg, train_cfg, resume=resume, world=world)
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
        err.print(f"[green]done:[/] {run_dir} ({len(results['experiences'])} experience(s)); "
                  f"`hope eval {run_dir}` shows the metrics")


def _checked(make):
    """Run a config constructor, turning its ValueError into a usage error."""
    try:
        return make()
    except ValueError as e:
        raise click.UsageError(str(e)) from None


for _field, _memory, _hint in _model_fields():
    command.params.append(_model_option(_field, _memory, _hint))
command.params.extend(TRAIN_OPTIONS)
