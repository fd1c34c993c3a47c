"""Optional dependencies, installed as extras (`pip install 'bertforge[export]'`): the core package holds what
`predict`, `finetune` and `pretrain` need; data preparation, plots, export and serving bring their own. They are
imported only where a command uses them, and a missing one is one line saying which extra installs it."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from bertforge.errors import BertforgeError

# Extra -> the modules it installs (pyproject.toml's optional dependencies, by import name).
EXTRAS = {
    "data": ("jieba", "wikiextractor"),
    "plot": ("matplotlib",),
    "export": ("onnx", "onnxruntime", "onnxscript"),
    "serve": ("fastapi", "uvicorn", "prometheus_client"),
}


def need(module: str, extra: str = "export") -> ModuleType:
    """Import an optional package, or say in one line which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BertforgeError(f"{exc.name or module} is not installed; pip install 'bertforge[{extra}]'") from None


def missing(extra: str) -> list[str]:
    """The modules of `extra` that are not installed (looked up, not imported: wikiextractor is only ever run as
    a program)."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, command: str) -> None:
    """Fail in one line, before any work, when `command` cannot run for want of its extra."""
    if absent := missing(extra):
        raise BertforgeError(f"{command} needs {', '.join(absent)}, not installed; pip install 'bertforge[{extra}]'")


def note(extra: str) -> str:
    """A line for a command's --help when its extra is missing ("" when it is installed)."""
    absent = missing(extra)
    return f"Needs {', '.join(absent)}, not installed here: pip install 'bertforge[{extra}]'." if absent else ""
