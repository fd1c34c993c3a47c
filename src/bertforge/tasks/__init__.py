"""Task families for fine-tuning and inference, by kind. Adding a task: its module defines a `Task`
(`bertforge.tasks.task`) and one line below registers it — or, from another package, an entry point in the group
`bertforge.tasks` (name: the kind; object: the `Task`), which every command (`finetune`, `predict`, `export`,
`serve`) then knows."""

from __future__ import annotations

import functools
import logging
from importlib.metadata import entry_points

from bertforge.errors import BertforgeError
from bertforge.model_folder import ModelSettings, load_settings, save_model_folder
from bertforge.tasks import classification, multiple_choice, ner, qa
from bertforge.tasks.classification_metrics import compute_metrics
from bertforge.tasks.classification_readers import Example, ReadReport, read_examples
from bertforge.tasks.labels import LabelMap
from bertforge.tasks.ner_metrics import ner_scores
from bertforge.tasks.ner_readers import NerExample, read_ner
from bertforge.tasks.qa_metrics import qa_scores
from bertforge.tasks.qa_readers import QaExample, read_qa, split_paragraphs
from bertforge.tasks.task import Features, Task, TaskConfig

__all__ = [
    "TASKS", "registered", "get_task", "kinds_by_head", "Task", "TaskConfig", "Features",
    "ModelSettings", "load_settings", "save_model_folder", "LabelMap",
    "Example", "ReadReport", "read_examples", "compute_metrics",
    "NerExample", "read_ner", "ner_scores", "QaExample", "read_qa", "split_paragraphs", "qa_scores",
]  # fmt: skip

ENTRY_POINTS = "bertforge.tasks"


@functools.cache
def _plugins() -> dict[str, Task]:
    """The tasks other packages register as entry points (loaded on first use: a plugin imports this package);
    one that fails to load is named and left out."""
    found = {}
    for point in entry_points(group=ENTRY_POINTS):
        try:
            task = point.load()
        except Exception as exc:  # a broken plugin must not take every command down with it
            logging.getLogger("bertforge").warning(f"task plugin {point.name} ({point.value}) not loaded: {exc}")
            continue
        if not isinstance(task, Task) or task.kind != point.name:
            logging.getLogger("bertforge").warning(f"task plugin {point.name} ({point.value}): not a Task of that kind")
            continue
        found[point.name] = task
    return found


TASKS: dict[str, Task] = {task.kind: task for task in (classification.TASK, ner.TASK, qa.TASK, multiple_choice.TASK)}


def registered() -> dict[str, Task]:
    """Every task by kind: the built-in ones, then the plugins' (which cannot replace one)."""
    return TASKS | {kind: task for kind, task in _plugins().items() if kind not in TASKS}


def get_task(kind: str | None, where: str = "") -> Task:
    tasks = registered()
    if kind not in tasks:
        prefix = f"{where}: " if where else ""
        raise BertforgeError(f"{prefix}no task {kind!r}; known tasks: {', '.join(tasks)}")
    return tasks[kind]


def kinds_by_head() -> dict[str, str]:
    """Head class name (config.json's `architectures`) -> task kind, for folders written by transformers."""
    return {task.head.__name__: kind for kind, task in registered().items()}
