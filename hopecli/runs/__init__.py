"""The run folder that `hope train` writes and `eval`, `adapt`, `rollout` read.

Modules (imported from their modules, so that `hopecli.runs.folder` stays free of torch):

- `folder`: its layout, atomic writes, strict JSON, the writer lock, metrics.jsonl
- `files`: typed readers of latest.json, state.pt, results.json and split.json
- `config`: config.json read through the typed configs (`read_run_config`)
- `checkpoint`: checkpoints written whole, and the predictor rebuilt from one (`load_model`)
- `split`: the partitions and held-out clips of a run (`run_split`)
- `load`: a trained predictor with what its folder says about the data (`Run`, `load_run`)
- `seeds`: a folder of seed runs of one configuration (`expand_runs`)
"""
