"""Training: losses, data, optimizer with multi-rate (CMS) stepping, the step loop, the
continual-learning protocol. What it writes, the run folder, is hopecli.runs.

Entry points (imported from their modules):

- `hopecli.train.continual.train(store, run_dir, model_cfg, cfg, resume=False, world=None)`
- `hopecli.train.config.TrainConfig` (with `losses.LossConfig`, `optim.OptimConfig`)
- `hopecli.train.losses.normalize_features / rollout / jump` for later stages
"""
