"""An experiment on disk: its SQLite store, opening and resuming a directory, queries over its trials,
and Pareto fronts."""
