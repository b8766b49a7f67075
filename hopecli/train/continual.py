"""The continual-learning protocol behind `hope train`: experiences, evaluations, R matrices.

Partitions are groups of clips (store task labels): an optional base partition, then the
tasks (the seeds' protocol: base training, then five shifts one after another). The run
trains through a sequence of experiences (naive / replay: one partition each, base first;
joint: one experience on all of them), each with its own step budget; it evaluates the
untrained model and, after every experience, the model on the fixed held-out clips of
every partition, future ones included (teacher-forcing and jump error: one row of each R
matrix, one column per partition), checkpoints, and finally measures the error per
rollout horizon. Everything the run has learned so far lives in the checkpoint, so
`resume` continues bit for bit.
"""

from __future__ import annotations

import math
import signal
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from hopecli.console import err
from hopecli.errors import CheckpointError, HopeError, StoreMismatchError
from hopecli.model import Predictor, PredictorConfig
from hopecli.model.memory import SelfModifyingTitan
from hopecli.model.memory import compiled
from hopecli.model.memory.compiled import compile_mode, wants_compile
from hopecli.runs.checkpoint import (STATE, latest_checkpoint, load_state, load_weights, resolve_checkpoint,
                                    save_checkpoint)
from hopecli.runs.config import read_run_config
from hopecli.runs.files import check_state, read_split
from hopecli.runs.folder import CONFIG, METRICS, RESULTS, SPLIT, MetricsLog, run_lock, write_json
from hopecli.runs.split import held_out, protocol_tasks
from hopecli.train import numerics
from hopecli.train.config import TrainConfig
from hopecli.train.data import BatchPlan, clip_shape, reservoir
from hopecli.train.distributed import World, all_max, barrier, init_from_env
from hopecli.train.interrupt import TrainingInterrupted, stop_on_signals
from hopecli.train.loop import Experience, Reporter, train_experience
from hopecli.train.losses import WorldModelObjective
from hopecli.train.optim import build_optimizer, check_covers
from hopecli.train.runlog import RunLog, learning_curve
from hopecli.train.validate import evaluate_clips
from hopecli.version import __version__

ERRORS = ("teacher_forcing", "jump")
RESUME_FREE = ("device",)  # config fields a resumed run may change (a checkpoint is device-free)


def store_info(store) -> dict:
    """What config.json records about the store a run was trained on."""
    keys = ("encoder", "time_mode", "frames_per_clip", "resolution", "fps", "tubelet_size", "patch_size",
            "patches_per_step", "grid", "action_dim", "state_dim")
    return {"path": str(Path(store.path).resolve()), **{k: store.attrs.get(k) for k in keys}}


def check_model_fits_store(model_cfg: PredictorConfig, store) -> None:
    """The predictor's data shapes must be the store's (D, A, S, P, grid, T)."""
    T, P, D = clip_shape(store)
    want = {"input_dim": D, "patches_per_step": P, "action_dim": store.attrs["action_dim"],
            "state_dim": store.attrs["state_dim"]}
    for name, value in want.items():
        if getattr(model_cfg, name) != value:
            raise StoreMismatchError(
                f"{store.path}: the store has {name} = {value}, the predictor config {getattr(model_cfg, name)}"
            )
    if T > model_cfg.max_frames:
        raise StoreMismatchError(
            f"{store.path}: clips of {T} steps exceed the predictor's max_frames {model_cfg.max_frames}")
    if T < 2:
        raise HopeError(f"{store.path}: clips have {T} step(s); training needs at least 2")


@dataclass
class Protocol:
    tasks: list[str]  # the R columns: the base partition (if any), then the tasks in order
    base: str | None
    experiences: list[Experience]
    val: dict[str, list[int]]
    first_trained: list[int]  # per column: the row of the experience that first trains it
    train: dict[str, list[int]] = field(default_factory=dict)  # training clips per partition


def plan_protocol(store, cfg: TrainConfig, world: World) -> Protocol:
    """Partitions, validation clips and the experiences (with their batch plans) of a run."""
    parts = protocol_tasks(store, cfg)
    if cfg.batch_size % world.size:
        raise HopeError(f"batch size {cfg.batch_size} does not split evenly over {world.size} processes")
    try:
        budgets = dict(zip(parts, cfg.budgets(len(parts) - (cfg.base_task is not None))))
    except ValueError as e:
        raise HopeError(f"{store.path}: {e}") from None
    split = held_out(store, parts, cfg)
    groups = [tuple(parts)] if cfg.strategy == "joint" else [(t,) for t in parts]
    experiences = []
    for i, group in enumerate(groups):
        indices = sorted(k for t in group for k in split.train[t])
        earlier = [split.train[t] for g in groups[:i] for t in g]
        replay = reservoir(earlier, cfg.replay_size, cfg.seed) if cfg.strategy == "replay" and earlier else []
        replay_count = round(cfg.replay_fraction * cfg.batch_size) if replay else 0
        fresh = cfg.batch_size - replay_count
        steps = 0
        for t in group:
            kind, value = budgets[t]
            steps += int(value) if kind == "steps" else max(1, math.ceil(value * len(split.train[t]) / fresh))
        name = "joint" if cfg.strategy == "joint" else group[0]
        plan = BatchPlan(indices, cfg.batch_size, cfg.seed, f"experience{i}", replay, replay_count)
        experiences.append(Experience(i, name, group, plan, steps))
    first = [next(i for i, g in enumerate(groups) if t in g) for t in parts]
    return Protocol(parts, cfg.base_task, experiences, split.val, first, split.train)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _evaluate_tasks(model, store, protocol: Protocol, cfg: TrainConfig, world: World, horizon: int = 0) -> dict:
    return {t: evaluate_clips(model, store, protocol.val[t], world=world, batch_size=cfg.eval_batch_size,
                              horizon=horizon, jump_k=cfg.loss.jump_k) for t in protocol.tasks}


def _means(per_task: dict) -> dict:
    """evaluate_clips' results without the per-clip errors (what metrics.jsonl logs)."""
    return {t: {k: v for k, v in e.items() if k != "per_clip"} for t, e in per_task.items()}


def _row(per_task: dict, kind: str) -> list[float | None]:
    return [_finite_or_none(per_task[t][kind]) for t in per_task]


def _results(protocol: Protocol, cfg: TrainConfig, progress: dict, horizon: dict | None) -> dict:
    return {
        "hope_version": __version__,
        "strategy": cfg.strategy,
        "base_task": protocol.base,
        "tasks": protocol.tasks,
        "experiences": [{"name": e.name, "tasks": list(e.tasks), "steps": e.steps} for e in protocol.experiences],
        "first_trained": protocol.first_trained,
        "val_clips": {t: len(protocol.val[t]) for t in protocol.tasks},
        "initial": progress["initial"],
        "R": progress["R"],
        "horizon": horizon,
        "complete": horizon is not None,
    }


def train(
    store,
    run_dir: Path,
    model_cfg: PredictorConfig,
    cfg: TrainConfig,
    *,
    resume: bool = False,
    world: World | None = None,
    preset: str | None = None,
) -> dict:
    """Train a predictor on an open FeatureStore through the continual-learning protocol.

    Writes RUN/config.json, metrics.jsonl, checkpoints and results.json (rank 0), and
    returns the results dict. resume=True continues the run in `run_dir` from its latest
    checkpoint; the configs must equal the saved ones, and the compile decision recorded
    in config.json's `numerics` is replayed (hopecli.train.numerics). `preset` only labels
    the model in config.json.
    """
    world = world or init_from_env(cfg.device)
    run_dir = Path(run_dir)
    with run_lock(run_dir) if world.is_main else nullcontext():  # one writer per run folder
        return _train(store, run_dir, model_cfg, cfg, resume=resume, world=world, preset=preset)


def _train(store, run_dir: Path, model_cfg: PredictorConfig, cfg: TrainConfig, *, resume: bool,
           world: World, preset: str | None) -> dict:
    check_model_fits_store(model_cfg, store)
    protocol = plan_protocol(store, cfg, world)
    clip_steps = clip_shape(store)[0]
    horizon = cfg.horizon or clip_steps - 1
    if horizon > clip_steps - 1:
        raise HopeError(f"{store.path}: clips of {clip_steps} steps allow a horizon of at most "
                        f"{clip_steps - 1}, asked {horizon}")
    if cfg.loss.jump_k is not None and cfg.loss.jump_k > clip_steps - 1:
        raise HopeError(f"{store.path}: clips of {clip_steps} steps allow a jump_k of at most "
                        f"{clip_steps - 1}, asked {cfg.loss.jump_k}")
    total_steps = sum(e.steps for e in protocol.experiences)
    config = {"hope_version": __version__, "preset": preset, "model": model_cfg.to_dict(), "train": cfg.to_dict(),
              "store": store_info(store), "numerics": numerics.record(world.device, total_steps)}
    split = split_record(store, protocol)
    _prepare_run_dir(run_dir, config, resume, world, split)  # after every check: a refused run writes nothing
    recorded = read_run_config(run_dir).raw.get("numerics") if resume else config["numerics"]

    torch.manual_seed(cfg.seed)
    model = Predictor(model_cfg).to(world.device)
    groups = model.parameter_groups()
    check_covers(model, groups)
    optimizer = build_optimizer(groups, cfg.optim)
    progress = {"experience": 0, "step": 0, "global_step": 0, "initial": None,
                "R": {k: [] for k in ERRORS}}
    name = latest_checkpoint(run_dir) if resume else None
    if name is not None:
        folder = resolve_checkpoint(run_dir, name)
        load_weights(model, folder)
        state = check_state(load_state(folder), folder / STATE)
        _resume_optimizer(model, optimizer, state, folder / STATE)
        progress = state["progress"]

    log = None
    if world.is_main:
        MetricsLog.truncate(run_dir / METRICS, lambda r: _kept_on_resume(r, progress))
        log = RunLog(run_dir, start_step=progress["global_step"],
                     warn=lambda message: err.print(f"[yellow]warning:[/] {message}"))
    objective = WorldModelObjective(model, cfg.loss)
    if world.distributed:
        ids = [world.device.index] if world.device.type == "cuda" else None
        # without the jump loss, target_pos_embed gets no gradient
        objective = DistributedDataParallel(objective, device_ids=ids,
                                            find_unused_parameters=cfg.loss.jump_weight == 0)

    def checkpoint(name: str) -> None:
        if world.is_main:
            pending = {k: p.grad.detach().cpu() for k, p in model.named_parameters() if p.grad is not None}
            save_checkpoint(run_dir, name, model,
                            {"optimizer": optimizer.state_dict(), "pending_grads": pending, "progress": progress})
        barrier(world)

    has_memory = any(isinstance(m, SelfModifyingTitan) for m in model.modules())
    try:
        with (stop_on_signals() as stop, Reporter(cfg, world) as reporter,
              numerics.replayed(recorded, total_steps) as replay):
            compiling_on_cpu = has_memory and world.device.type == "cpu" and wants_compile(world.device, True)
            reporter.print(
                f"{model_cfg.pattern} predictor, {model.num_parameters():,} parameters, on {world.device}"
                f"{f' x {world.size} processes' if world.distributed else ''}; "
                f"{len(protocol.experiences)} experience(s): "
                + ", ".join(f"{e.name} ({e.steps} steps)" for e in protocol.experiences))
            if resume:
                changed = numerics.differences(replay, numerics.record(world.device, total_steps))
                reporter.print(f"resuming with the run's recorded --compile {replay['compile']} "
                               f"(decided on its {replay['compile_steps']} steps)")
                if changed:
                    reporter.print(f"[yellow]warning:[/] resumed with {', '.join(changed)} (recorded in "
                                   f"{run_dir / CONFIG}); the remaining steps may differ from an "
                                   "uninterrupted run in the last bits")
            if compiling_on_cpu:
                why = (f"auto: {replay['compile_steps']} steps on the CPU repay the first steps' compilation; "
                       "--compile off skips it" if compile_mode() == "auto" else compile_mode())
                reporter.print(f"compiling the memory's training step (--compile {why})")
                if compile_mode() == "on" and replay["compile_steps"] < compiled.CPU_TRAIN_STEPS:
                    reporter.print(
                        f"[yellow]warning:[/] --compile on: {replay['compile_steps']} steps on the CPU are too "
                        f"few to repay the compilation (about 95 s, repaid after about 130 steps; --compile "
                        f"auto compiles CPU runs of {compiled.CPU_TRAIN_STEPS} steps or more); this run will "
                        "likely be slower than with --compile off")
            if progress["initial"] is None:
                reporter.print("evaluating the untrained model on the validation clips of every task")
                per_task = _evaluate_tasks(model, store, protocol, cfg, world)
                progress["initial"] = {k: _row(per_task, k) for k in ERRORS}
                if log:
                    log.write({"kind": "eval", "step": 0, "experience": -1, "errors": _means(per_task)})
            for exp in protocol.experiences[progress["experience"]:]:
                def periodic(step: int, global_step: int) -> None:
                    progress.update(step=step, global_step=global_step)
                    checkpoint(f"step-{global_step:07d}")

                global_step = train_experience(
                    exp, objective=objective, optimizer=optimizer, store=store, clip_steps=clip_steps,
                    start_step=progress["step"], global_step=progress["global_step"], cfg=cfg, world=world,
                    log=log, reporter=reporter, checkpoint=periodic, stop=stop,
                )
                per_task = _evaluate_tasks(model, store, protocol, cfg, world)
                for k in ERRORS:
                    progress["R"][k].append(_row(per_task, k))
                progress.update(experience=exp.index + 1, step=0, global_step=global_step)
                checkpoint(f"experience-{exp.index}")
                if world.is_main:
                    log.write({"kind": "eval", "step": global_step, "experience": exp.index,
                               "errors": _means(per_task)})
                    write_json(run_dir / RESULTS, _results(protocol, cfg, progress, None))
                    _print_row(reporter, exp, per_task)
                _stop_if_asked(stop, world, f"after experience {exp.index + 1} '{exp.name}'; "
                                            f"checkpoint experience-{exp.index} saved")
            reporter.print(f"measuring the error per rollout horizon (1..{horizon} steps)")
            per_task = _evaluate_tasks(model, store, protocol, cfg, world, horizon=horizon)
            _stop_if_asked(stop, world, "during the final measurement per horizon; every experience "
                                        "is checkpointed, --resume measures again")
    finally:
        if log is not None:
            log.close()
    per_horizon = {"steps": horizon, "tasks": {t: [_finite_or_none(e) for e in per_task[t]["horizon"]]
                                               for t in protocol.tasks}}
    results = _results(protocol, cfg, progress, per_horizon)
    # the final model's error on every validation clip, for the intervals of `hope eval`
    results["clip_errors"] = {k: {t: [_finite_or_none(e) for e in per_task[t]["per_clip"][k]]
                                  for t in protocol.tasks} for k in ERRORS}
    if world.is_main:
        write_json(run_dir / RESULTS, results)
        learning_curve(run_dir)
    barrier(world)
    return results


def _resume_optimizer(model, optimizer, state: dict, path: Path) -> None:
    """Load a checkpoint's optimizer state and pending CMS gradients into the run's own;
    CheckpointError naming state.pt when they belong to another model."""
    params = dict(model.named_parameters())
    unknown = sorted(set(state["pending_grads"]) - set(params))
    if unknown:
        raise CheckpointError(f"{path}: pending gradients of parameters the model does not have ({unknown[0]!r})")
    for key, grad in state["pending_grads"].items():
        if grad.shape != params[key].shape:
            raise CheckpointError(f"{path}: pending gradient of {key!r} has shape {list(grad.shape)}, "
                                  f"the parameter {list(params[key].shape)}")
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise CheckpointError(f"{path}: the optimizer state does not fit this model ({e})") from None
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != p.shape:
                    raise CheckpointError(f"{path}: the optimizer state {key!r} has shape {list(value.shape)}, "
                                          f"a parameter {list(p.shape)}: it belongs to another model")
    for key, grad in state["pending_grads"].items():
        params[key].grad = grad.to(params[key].device)


def _stop_if_asked(stop, world: World, where: str) -> None:
    """TrainingInterrupted when a signal arrived during an evaluation (the step loop looks
    before every step; this covers the evaluations between and after the experiences)."""
    signum = int(all_max(torch.tensor([float(stop.signum or 0)]), world).item())
    if signum:
        raise TrainingInterrupted(f"stopped by {signal.Signals(signum).name} {where}", signum)


def _kept_on_resume(record: dict, progress: dict) -> bool:
    """metrics.jsonl records that the checkpoint being resumed already accounts for."""
    if record.get("kind") == "eval":
        if record["experience"] == -1:  # the untrained model's: kept only if the checkpoint holds it
            return progress["initial"] is not None
        return record["experience"] < progress["experience"]
    return record.get("step", 0) <= progress["global_step"]


def split_record(store, protocol: Protocol) -> dict:
    """What RUN/split.json holds: the names of the training and validation clips of every
    partition, so a resume can tell that the store now splits differently."""
    names = store.clips
    return {kind: {t: [names[i] for i in indices[t]] for t in protocol.tasks}
            for kind, indices in (("train", protocol.train), ("val", protocol.val))}


def _some(label: str, names: list[str]) -> str:
    return f"{label} {names[0]!r}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def check_split(saved: dict, split: dict, store_path: str, path: Path) -> None:
    """StoreMismatchError naming the first partition whose clips differ from the split
    recorded in `path` (RUN/split.json)."""
    for kind, label in (("val", "validation"), ("train", "training")):
        before, now = saved.get(kind, {}), split[kind]
        for task in dict.fromkeys([*before, *now]):
            old, new = before.get(task, []), now.get(task, [])
            if old == new:
                continue
            added, gone = sorted(set(new) - set(old)), sorted(set(old) - set(new))
            change = "; ".join(([_some("new", added)] if added else []) + ([_some("gone", gone)] if gone else []))
            raise StoreMismatchError(
                f"{store_path}: the clips differ from the split recorded in {path}: task {task!r} now has "
                f"{len(new)} {label} clip(s), not {len(old)} ({change or 'in another order'}); resume on "
                "the store as it was, or start a new run with another --out")


def _prepare_run_dir(run_dir: Path, config: dict, resume: bool, world: World, split: dict) -> None:
    """Write config.json and split.json for a new run, or check them against the saved ones
    on resume."""
    path = run_dir / CONFIG
    if resume:
        if not path.exists():
            raise HopeError(f"{run_dir}: nothing to resume (no {CONFIG})")
        # through the config classes, so fields added since the run started compare as defaults
        parsed = read_run_config(run_dir)
        saved = {**parsed.raw, "model": parsed.model.to_dict(), "train": parsed.train.to_dict()}
        for section in ("model", "train"):
            diff = sorted(k for k in set(saved[section]) | set(config[section])
                          if saved[section].get(k) != config[section].get(k) and k not in RESUME_FREE)
            if diff:
                raise HopeError(f"{path}: --resume needs the saved {section} config; these differ: {diff}")
        if saved["store"]["encoder"] != config["store"]["encoder"]:
            raise StoreMismatchError(
                f"{config['store']['path']}: encoder differs from the one the run in {run_dir} was trained on")
        if (run_dir / SPLIT).exists():
            check_split(read_split(run_dir / SPLIT), split, config["store"]["path"], run_dir / SPLIT)
        elif world.is_main:  # a run from before split.json: record it from here on
            write_json(run_dir / SPLIT, split)
        return
    if path.exists():
        raise HopeError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --out")
    barrier(world)  # every rank has looked before rank 0 writes
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / SPLIT, split)
        write_json(path, config)
    barrier(world)


def _print_row(reporter: Reporter, exp: Experience, per_task: dict) -> None:
    cells = ", ".join(f"{t} {e['teacher_forcing']:.4f}/{e['jump']:.4f}" for t, e in per_task.items())
    reporter.print(f"after {exp.index + 1}. {exp.name}: teacher-forcing/jump error {cells}")
