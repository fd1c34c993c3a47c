"""Import Google BERT's own scripts (fetched with `bertforge.samples`) without TensorFlow.

The scripts only touch a sliver of TF at import and in the functions we call (`tf.gfile`, `tf.logging`,
`tf.flags`), so a small stand-in module is registered as `tensorflow`/`tensorflow.compat.v1`; anything
heavier (models, TPU estimators) is out of scope. `six` gets a stand-in too when it is not installed.
"""

from __future__ import annotations

import ast
import contextlib
import glob
import importlib
import importlib.util
import logging
import sys
import types
from pathlib import Path
from typing import Callable

from absl import flags

from bertforge.samples import fetch

PACKAGE = "bert"  # the scripts import each other as `from bert import tokenization`


def _gfile_open(path, mode="r"):
    return open(path, mode) if "b" in mode else open(path, mode, encoding="utf-8")


def _tensorflow_stand_in() -> types.ModuleType:
    tf = types.ModuleType("tensorflow")
    tf.gfile = types.SimpleNamespace(
        GFile=_gfile_open, Open=_gfile_open, Glob=glob.glob, Exists=lambda p: Path(p).exists()
    )
    log = logging.getLogger("google_bert")
    tf.logging = types.SimpleNamespace(
        info=log.info, warning=log.warning, error=log.error, set_verbosity=lambda level: None, INFO=logging.INFO
    )
    tf.flags = flags
    tf.compat = types.SimpleNamespace(v1=tf)
    return tf


_STAND_IN_NAMES = ("tensorflow", "tensorflow.compat", "tensorflow.compat.v1")


@contextlib.contextmanager
def _tensorflow_stand_ins():
    """The stand-in is visible in sys.modules only while Google's scripts are imported (they keep their
    own reference): left there, it would fool other libraries that probe for TensorFlow (tensorboard)."""
    saved = {name: sys.modules.get(name) for name in _STAND_IN_NAMES}
    tf = _tensorflow_stand_in()
    compat = types.ModuleType("tensorflow.compat")
    compat.v1 = tf
    sys.modules.update({"tensorflow": tf, "tensorflow.compat": compat, "tensorflow.compat.v1": tf})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _install_six() -> None:
    try:
        import six  # noqa: F401
    except ImportError:
        six = types.ModuleType("six")
        six.PY2, six.PY3 = False, True
        six.string_types, six.text_type, six.binary_type = (str,), str, bytes
        six.iteritems = lambda d: iter(d.items())
        sys.modules["six"] = six


def google_bert_dir() -> Path:
    return fetch("google-bert")


def load_google_module(name: str) -> types.ModuleType:
    """Import `bert.<name>` (e.g. "tokenization", "create_pretraining_data") from the fetched folder."""
    _install_six()
    folder = google_bert_dir()
    with _tensorflow_stand_ins():
        if PACKAGE not in sys.modules:
            spec = importlib.util.spec_from_file_location(
                PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
            package = importlib.util.module_from_spec(spec)
            sys.modules[PACKAGE] = package
            spec.loader.exec_module(package)
        module = importlib.import_module(f"{PACKAGE}.{name}")
    if not flags.FLAGS.is_parsed():  # the scripts read FLAGS at call time (e.g. preserve_unused_tokens)
        flags.FLAGS(["google_bert"], known_only=True)
    return module


def load_google_function(module: str, function: str) -> Callable:
    """One top-level function from `bert/<module>.py`, compiled on its own: for scripts whose imports
    (modeling, TPU estimators) the stand-in cannot satisfy, e.g. run_classifier's `_truncate_seq_pair`."""
    path = google_bert_dir() / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    if not nodes:
        raise LookupError(f"{path} has no top-level function {function!r}")
    namespace: dict = {}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)
    return namespace[function]
