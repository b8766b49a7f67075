"""`hope rollout`: autoregressive prediction under given actions, and CEM planning."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from hopecli.commands.help import HopeCommand
from hopecli.commands.options import compile_option, run_source_options, threads_option
from hopecli.console import err
from hopecli.runs.folder import dumps_report


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:+.4f}" for v in values) + "]"


EXAMPLES = [
    ("predict from 2 observed steps under the clip's own actions, with a picture and the features",
     "hope rollout --run demo_out/hope_naive/seed0 --clip sample_data/new_friction.mp4 --context 2 --png rollout.png --out rollout.npy"),
    ("a clip from the feature store instead of a video",
     "hope rollout --run runs/hope --store demo_out/sample.zarr --index 5 --context 1 --json"),
    ("plan actions toward a goal video with CEM (V-JEPA 2-AC's planner)",
     "hope rollout --run runs/hope --clip start.mp4 --plan --goal goal.mp4 --png plan.png"),
]


# the --help panels, in order; every option belongs to one (tests/test_help.py checks)
PANELS = [
    ("Run and clip", ["--run", "--store", "--index", "--weights", "--which", "--clip", "--context",
                      "--actions", "--init-state"]),
    ("Planning", ["--plan", "--goal", "--mpc-steps", "--samples", "--top-k", "--iterations", "--horizon",
                  "--max-action", "--seed"]),
    ("Output", ["--out", "--png", "--json"]),
    ("Resources", ["--device", "--threads", "--compile", "--help"]),
]


@click.command(cls=HopeCommand, examples=EXAMPLES, see_also=["train", "adapt", "eval"],
               option_panels=PANELS)
@run_source_options
@click.option("--clip", type=click.Path(path_type=Path), default=None,
              help="A video with its .npz sidecar, encoded as the run's store was (first window).")
@click.option("--context", type=click.IntRange(min=1), default=1, show_default=True,
              help="Observed steps before the first prediction.")
@click.option("--actions", "actions_file", type=click.Path(path_type=Path), default=None,
              help="Actions [H, A] (.npy) to roll out from the last context step instead of the clip's own.")
@click.option("--init-state", type=click.Path(path_type=Path), default=None,
              help="Adapted state written by `hope adapt --save` (memory states, learned CMS and LayerNorm weights).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the predictions: PRED.npy ([H, P, D]) or PRED.zarr (with actions and errors).")
@click.option("--png", type=click.Path(path_type=Path), default=None,
              help="Figure: clip frames beside PCA-as-RGB renderings of true and predicted features; with "
                   "--plan, the observed steps, the goal and the rollout under the planned actions.")
@click.option("--plan", is_flag=True, help="Plan actions toward --goal with CEM (MPC) instead.")
@click.option("--goal", type=click.Path(path_type=Path), default=None,
              help="Goal video for --plan; its first window's last step is the goal (no sidecar needed).")
@click.option("--mpc-steps", type=click.IntRange(min=1), default=1, show_default=True,
              help="Planning steps: plan, execute the first action in the model, re-plan.")
@click.option("--samples", type=click.IntRange(min=2), default=400, show_default=True,
              help="CEM action sequences per iteration.")
@click.option("--top-k", type=click.IntRange(min=2), default=10, show_default=True,
              help="CEM elites per iteration.")
@click.option("--iterations", type=click.IntRange(min=1), default=10, show_default=True,
              help="CEM iterations per planning step.")
@click.option("--horizon", type=click.IntRange(min=1), default=2, show_default=True,
              help="Steps of every planned action sequence.")
@click.option("--max-action", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Plan within [-M, M] per action dim [default: the largest |action| per dim in the clip].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the CEM samples.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@threads_option
@compile_option
def command(run_dir, clip, store, index, weights, which, context, actions_file, init_state, out, png,
            plan, goal, mpc_steps, samples, top_k, iterations, horizon, max_action, seed, device, as_json):
    """Predict a clip's future features autoregressively from CONTEXT observed steps.

    The predictor state (memory states, KV caches) is carried from step to step instead
    of recomputing the context. Under the clip's own actions the L1 error per horizon is
    reported against the true steps. With --plan --goal, CEM searches action sequences
    whose predicted last step comes closest to the goal (V-JEPA 2-AC's planner), prints
    the planned actions and the time per planning step, and compares the energy (L1
    between the predicted last step and the goal) of the planned actions with that of
    the clip's own actions and of zero actions over the same horizon.
    """
    import numpy as np

    from hopecli.clips import goal_frame, load_clips
    from hopecli.errors import InputError
    from hopecli.extract import resolve_device
    from hopecli.rollout import rollout_clip, rollout_figure, write_prediction
    from hopecli.runs.load import load_run

    if (clip is None) == (store is None):
        raise click.UsageError("give --clip VIDEO or --store STORE --index I")
    if store is not None and index is None:
        raise click.UsageError("--store needs --index")
    if plan and goal is None:
        raise click.UsageError("--plan needs --goal GOAL.mp4")
    if goal is not None and not plan:
        raise click.UsageError("--goal is used with --plan")
    if plan and actions_file is not None:
        raise click.UsageError("--plan chooses the actions; leave out --actions")
    if top_k > samples:
        raise click.BadParameter(f"{top_k} elites out of {samples} samples", param_hint="--top-k")
    if out is not None and out.suffix not in (".npy", ".zarr"):
        raise click.BadParameter("must end in .npy or .zarr", param_hint="--out")

    run = load_run(run_dir, resolve_device(device))
    windows = load_clips(run, clip=clip, store=store, index=index, weights=weights, which=which)
    the_clip = windows[0]
    model, state = run.model, None
    if init_state is not None:
        from hopecli.adapt import load_state, with_state

        model, state = with_state(run.model, load_state(init_state, run.model, run.device))

    given = None
    if actions_file is not None:
        try:
            given = np.load(actions_file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{actions_file}: not a readable .npy file ({e})") from e
        A = run.model.config.action_dim
        if given.ndim != 2 or given.shape[0] < 1 or given.shape[1] != A or given.dtype.kind not in "fiu":
            raise InputError(f"{actions_file}: actions must be numbers of shape [steps, {A}], got "
                             f"{list(given.shape)} of {given.dtype}")
        if not np.isfinite(given).all():
            row = int(np.argmin(np.isfinite(given).all(axis=1)))
            raise InputError(f"{actions_file}: row {row} of the actions holds NaN or infinite values")

    report: dict = {"run": str(run_dir), "clip": the_clip.name}
    goal_features = None
    if plan:
        given, goal_features = _plan(run, model, state, the_clip, goal, weights, which, context, mpc_steps, samples, top_k,
                      iterations, horizon, max_action, seed, report)
    result = rollout_clip(model, the_clip, context, actions=given, frames_per_step=run.frames_per_step,
                          state=state, device=run.device)
    report["rollout"] = result.to_dict()
    _rollout_table(result, planned=plan)
    if out is not None:
        write_prediction(result, out)
        err.print(f"predictions -> {out}", soft_wrap=True)
    if png is not None:
        rollout_figure(the_clip, result, tuple(run.model.config.grid), png,
                       goal=None if goal_features is None else goal_features.cpu().numpy(),
                       goal_image=goal_frame(goal, run) if plan else None)
        err.print(f"figure -> {png}", soft_wrap=True)
    if as_json:
        click.echo(dumps_report(report))


def _plan(run, model, state, clip, goal, weights, which, context, mpc_steps, samples, top_k, iterations,
          horizon, max_action, seed, report):
    """Plan toward the goal, print the steps, and return the executed actions [N, A]."""
    import numpy as np
    import torch

    from hopecli.clips import encode_goal, run_encoder
    from hopecli.errors import InputError
    from hopecli.plan import CEMConfig, plan_to_goal

    T = clip.features.shape[0]
    if context > T:
        raise InputError(f"{clip.name}: --context {context} exceeds the clip's {T} steps")
    cfg = CEMConfig(samples=samples, top_k=top_k, iterations=iterations, horizon=horizon)
    goal_features = encode_goal(goal, run, run_encoder(run, weights, which))
    bound = (torch.full((run.model.config.action_dim,), max_action) if max_action is not None
             else torch.from_numpy(np.abs(clip.actions).max(0)))
    if not bool((bound > 0).all()):
        raise InputError(f"{clip.name}: its actions are zero in some dim, so give the bounds with --max-action")
    z, a, s = clip.tensors(run.device)
    generator = torch.Generator(device=run.device).manual_seed(seed)
    reference = clip.actions[context - 1 : context - 1 + mpc_steps]

    err.print(f"CEM planning toward {goal} ({cfg.samples} samples, top {cfg.top_k}, {cfg.iterations} "
              f"iterations, horizon {cfg.horizon})", highlight=False)
    table = Table()
    for name in ("step", "executed action", "planned sequence", "clip's own action", "energy", "seconds"):
        table.add_column(name, justify="right", no_wrap=name != "step")

    def on_step(i, step):  # one action vector per line
        own = _fmt(reference[i]) if i < len(reference) else "-"
        table.add_row(str(context - 1 + i), _fmt(step.actions[0]), "\n".join(_fmt(x) for x in step.actions),
                      own, f"{step.energy:.4f}", f"{step.seconds:.3f}")

    result = plan_to_goal(model, z[:context], a[:context], s[:context], goal_features.to(run.device),
                          -bound, bound, mpc_steps=mpc_steps, frames_per_step=run.frames_per_step, cfg=cfg,
                          generator=generator, state=state, on_step=on_step)
    err.print(table)
    plan = result.to_dict()
    err.print(f"mean time per planning step: {plan['mean_seconds_per_step']:.3f} s on {run.device}",
              soft_wrap=True)
    energies, verdicts = _compare_energies(run, model, state, clip, context, z, a, s, goal_features,
                                           result.steps[0].actions, cfg.horizon)
    at_bound = [d for d, (x, b) in enumerate(zip(result.steps[0].actions[0], bound.tolist()))
                if abs(x) >= b * (1 - 1e-3)]
    if at_bound:
        err.print(f"note: the first planned action is at its bound in dim {', '.join(map(str, at_bound))} "
                  f"(+-{', '.join(f'{bound[d]:.3g}' for d in at_bound)}); --max-action sets the bounds",
                  highlight=False)
    report["plan"] = {**plan, "goal": str(goal), "bounds": bound.tolist(), "verdicts": verdicts,
                      "clip_actions": reference.tolist(), "config": vars(cfg), "energies": energies}
    return np.asarray(result.executed, np.float32), goal_features


ENERGY_LABELS = {"planned": "planned actions", "own": "the clip's own actions", "zero": "zero actions"}


def _compare_energies(run, model, state, clip, context, z, a, s, goal, planned, horizon) -> dict:
    """Energy of the first planned sequence, the clip's own actions and zero actions over the
    same horizon from the last context step, printed one per line, and the verdict against
    each (hopecli.verdict: a paired sign-flip test over the goal's patches). Returns
    (energies, verdicts)."""
    import torch

    from hopecli.plan import score_sequences
    from hopecli.verdict import compare

    sequences = {"planned": torch.tensor(planned), "zero": torch.zeros(horizon, a.shape[1])}
    own = clip.actions[context - 1 : context - 1 + horizon]
    if len(own) == horizon:
        sequences["own"] = torch.from_numpy(own)
    energies, per_patch = score_sequences(model, z[:context], a[:context], s[:context], goal.to(run.device),
                                          sequences, frames_per_step=run.frames_per_step, state=state)
    err.print(f"energy after {horizon} step(s) from step {context - 1} (L1 to the goal; lower is closer):",
              highlight=False)
    for key in ("planned", "own", "zero"):
        value = f"{energies[key]:.6f}" if key in energies else f"- (the clip has fewer than {horizon} actions left)"
        err.print(f"  {ENERGY_LABELS[key] + ':':<24} {value}", highlight=False)
    others = [k for k in ("own", "zero") if k in energies]
    verdicts = {}
    for key in others:
        versus = compare(per_patch["planned"].tolist(), per_patch[key].tolist(), ENERGY_LABELS[key])
        verdicts[key] = versus.to_dict()
        words = {"better": "got closer to the goal than", "worse": "ended farther from the goal than",
                 "no clear difference": "made no clear difference against"}[versus.outcome]
        err.print(f"planning {words} {ENERGY_LABELS[key]}: energy {versus.percent} ({versus.test('patches')})",
                  highlight=False)
    return energies, verdicts


def _rollout_table(result, planned: bool = False) -> None:
    how = "own actions" if result.own_actions else "planned actions" if planned else "given actions"
    err.print(f"rollout of {result.clip} from {result.context} context step(s), {how}", highlight=False)
    table = Table()
    table.add_column("horizon", justify="right")
    table.add_column("predicted step", justify="right")
    table.add_column("action before it", justify="right", no_wrap=True)
    table.add_column("L1 vs truth", justify="right")
    baselines = result.baselines or {}
    for name in baselines:
        table.add_column(f"{name.replace('_', '-')} L1", justify="right")
    for h in range(result.pred.shape[0]):
        error = f"{result.errors[h]:.4f}" if result.errors is not None else "-"
        table.add_row(str(h + 1), str(result.context + h), _fmt(result.actions[h]), error,
                      *(f"{values[h]:.4f}" for values in baselines.values()))
    if result.errors is not None and baselines:
        summary = result.to_dict()
        table.add_section()
        table.add_row("mean", "", "", f"{summary['mean_l1']:.4f}",
                      *(f"{sum(v) / len(v):.4f}" for v in baselines.values()))
        rel = summary["mean_l1_vs_copy"]
        if rel is not None:
            table.add_row("", "", "", f"{100 * rel:+.1f}% vs copy", *([""] * len(baselines)))
    err.print(table)
    if result.errors is not None and baselines:
        versus = result.versus_best_baseline()
        means = {sum(v) / len(v) for v in baselines.values()}
        which = ("both baselines are equal here" if len(means) == 1
                 else f"{versus.reference} is the better baseline here")
        err.print(f"mean L1 {versus.sentence('horizons')}; {which}", highlight=False)
