"""Task families for fine-tuning and inference, by kind. Adding a task: its module defines a `Task`
(`bertforge.tasks.task`) and one line below registers it."""

from __future__ import annotations

from bertforge.errors import BertforgeError
from bertforge.tasks import classification, ner, qa
from bertforge.tasks.folder import ModelSettings, load_settings, save_model_folder
from bertforge.tasks.labels import LabelMap
from bertforge.tasks.metrics import compute_metrics
from bertforge.tasks.ner_metrics import ner_scores
from bertforge.tasks.ner_readers import NerExample, read_ner
from bertforge.tasks.qa_metrics import qa_scores
from bertforge.tasks.qa_readers import QaExample, read_qa, split_paragraphs
from bertforge.tasks.readers import Example, ReadReport, read_examples
from bertforge.tasks.task import Features, Task, TaskConfig

__all__ = [
    "TASKS", "register", "get_task", "kinds_by_head", "Task", "TaskConfig", "Features",
    "ModelSettings", "load_settings", "save_model_folder", "LabelMap",
    "Example", "ReadReport", "read_examples", "compute_metrics",
    "NerExample", "read_ner", "ner_scores", "QaExample", "read_qa", "split_paragraphs", "qa_scores",
]  # fmt: skip

TASKS: dict[str, Task] = {
    classification.TASK.kind: classification.TASK,
    ner.TASK.kind: ner.TASK,
    qa.TASK.kind: qa.TASK,
}


def register(task: Task) -> Task:
    """Make `task` available to `finetune`, `predict` and model folders by its kind."""
    TASKS[task.kind] = task
    return task


def get_task(kind: str | None, where: str = "") -> Task:
    if kind not in TASKS:
        prefix = f"{where}: " if where else ""
        raise BertforgeError(f"{prefix}no task {kind!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[kind]


def kinds_by_head() -> dict[str, str]:
    """Head class name (config.json's `architectures`) -> task kind, for folders written by transformers."""
    return {task.head.__name__: kind for kind, task in TASKS.items()}
