"""Training: losses, data, optimizer with multi-rate (CMS) stepping, the step loop, the
continual-learning protocol, checkpoints and the run folder.

Entry points (imported from their modules, so that `hopecli.train.rundir` stays free of torch):

- `hopecli.train.continual.train(store, run_dir, model_cfg, cfg, resume=False, world=None)`
- `hopecli.train.config.TrainConfig` (with `losses.LossConfig`, `optim.OptimConfig`)
- `hopecli.train.checkpoint.load_model(run_dir, checkpoint=None, device="cpu")`
- `hopecli.train.losses.normalize_features / rollout / jump` for later stages
"""
