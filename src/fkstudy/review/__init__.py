"""`python -m fkstudy review [BASE_REV] [--target REV_OR_EXP]`: a Markdown review of what a pull request
(or a DVC experiment) changed — params, metrics with their noise band and a verdict, plots, stages re-run.

  compare   the metrics of both revisions: spreads, directions, verdicts (pure)
  bands     bootstrap intervals of test metrics from per-product predictions (pure)
  lockdiff  stages re-run and plots changed, from the two dvc.lock files (pure)
  render    the Markdown report (pure)
  revs      git / dvc I/O: revisions, files at a revision, `dvc params|metrics|plots diff`
  cli       the command: argument parsing, gathering, writing
"""
