"""Registries of the plug-in kinds a config names by a word: executors and evaluators.

Each maps a name to where its implementation lives (``module:attribute``), imported only when
it is used, so that the config (at the bottom of the house) validates a name, the CLI lists the
choices and the stages build the part, all from one table, without the config importing what it
names. Controllers have their own registry with per-kind options (``search.controllers.registry``);
latency backends are the device side's (``devices.backends``).
"""

from __future__ import annotations

import importlib

# where trials run: executor(work_dir, max_parallel, trials_per_gpu, timeout_s, address=None)
EXECUTORS = {"local": "search.trials.executors:LocalExecutor", "ray": "search.trials.executors:RayExecutor"}
# how a stage-1 candidate is evaluated: factory(config, directory, executor_kind, tuning, log) -> an Executor
EVALUATORS = {"proxy": "search.stages.stage1:proxy_executor", "supernet": "search.stages.stage1:supernet_executor"}


def load(registry: dict[str, str], name: str):
    """The implementation registered as ``name``; a ValueError lists the names there are."""
    module, _, attribute = registry[check_name(registry, name)].partition(":")
    return getattr(importlib.import_module(module), attribute)


def check_name(registry: dict[str, str], name: str) -> str:
    if name not in registry:
        raise ValueError(f"unknown {name!r}; use one of {', '.join(registry)}")
    return name
