"""Task families for fine-tuning and inference, by kind. Adding a task: its module defines a `Task`
(`bertforge.tasks.task`) and one line below registers it."""

from __future__ import annotations

from bertforge.errors import BertforgeError
from bertforge.tasks import classification, ner, qa
from bertforge.tasks.task import Task

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
