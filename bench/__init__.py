"""Benchmarks (scripts: `python bench/<name>.py`) and their shared helpers (_bench, _repo), which the
integration fixtures import too (`from bench._repo import ...`)."""
