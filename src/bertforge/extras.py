"""Optional dependencies, installed as extras (`pip install 'bertforge[export]'`): imported only where a command
uses them, and a missing one is one line saying what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from bertforge.errors import BertforgeError


def need(module: str, extra: str = "export") -> ModuleType:
    """Import an optional package, or say in one line which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BertforgeError(f"{exc.name or module} is not installed; pip install 'bertforge[{extra}]'") from None
