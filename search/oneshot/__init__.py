"""One-shot search: train one weight-sharing supernet (``mnas.supernet``) on the proxy task,
then evaluate candidates through it instead of training each (``evaluator: supernet``).

- ``training``: ``train_supernet`` (SPOS path sampling, sandwich rule, in-place distillation;
  checkpoints every epoch and resumes after a kill);
- ``evaluator``: a candidate's top-1 through its path after BN recalibration, and the
  ``SupernetExecutor`` that gives the search loop these evaluations as trial results;
- ``cli``: ``mnas supernet train | eval | extract``.
"""
