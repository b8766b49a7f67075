"""The library behind `hope eval`, one module per kind of thing:

- `evaluate`: `evaluate_runs`, the whole command over a list of runs
- `metrics`: the metric definitions on a run's error matrices (ours, the seeds', Gap Closed)
- `measure`: measurements on a run's validation clips (errors per horizon, baselines);
  `probe` and `incontext`: the physical probe and the in-context curves
- `intervals`: means with 95% intervals over seeds and validation clips
- `figures`: every figure it draws; `report`: RunReport, what it shows for one run
"""
