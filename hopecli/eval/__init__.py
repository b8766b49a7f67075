"""The library behind `hope eval`: metrics of a run's error matrices, measurements on its
validation clips, intervals over seeds, and figures."""
