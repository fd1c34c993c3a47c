"""The command line's dispatch: every subcommand is reachable by its name, and a command loads only its own
module, so the data commands start without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bertforge.cli import SUBCOMMANDS, build_parser

LIGHT = ["tokenize", "extract-wiki", "create-pretraining-data", "convert-data", "inspect", "plot"]


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_each_command_builds_alone_under_its_own_name(command):
    sub = build_parser(command)._subparsers._group_actions[0]
    assert list(sub.choices) == [command]


def test_the_full_parser_has_every_command():
    sub = build_parser()._subparsers._group_actions[0]
    assert list(sub.choices) == list(SUBCOMMANDS)


def test_a_light_command_runs_without_importing_torch(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]) + "\n")
    code = (
        "import sys\n"
        "from bertforge.cli import main\n"
        f"assert main(['tokenize', '--vocab', {str(vocab)!r}, 'hello world']) == 0\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["hello world", "False"]


@pytest.mark.parametrize("command", LIGHT)
def test_light_commands_parse_without_importing_torch(command):
    code = "import sys\nfrom bertforge.cli import build_parser\n"
    code += f"build_parser({command!r})\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_an_unknown_command_lists_every_command(capsys):
    from bertforge.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "create-pretraining-data" in capsys.readouterr().err


def test_version(capsys):
    from bertforge import __version__
    from bertforge.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"bertforge {__version__}\n"


@pytest.fixture
def without(monkeypatch):
    """`without(*modules)`: those optional packages look uninstalled (as after `pip install bertforge`)."""
    import importlib.util

    from bertforge import extras

    def hide(*modules):
        real = importlib.util.find_spec
        monkeypatch.setattr(
            extras.importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a)
        )
        for name in modules:
            monkeypatch.setitem(sys.modules, name, None)  # an import of it fails as if absent

    return hide


@pytest.mark.parametrize(
    ("args", "modules", "extra"),
    [
        (["extract-wiki", "dump.xml.bz2", "--output", "out"], ("wikiextractor",), "data"),
        (["plot", "run"], ("matplotlib",), "plot"),
        (["export", "--model", "m", "--output", "o"], ("onnxruntime",), "export"),
    ],
)
def test_a_command_whose_extra_is_missing_names_it(without, capsys, args, modules, extra):
    from bertforge.cli import main

    without(*modules)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    needs = f"{args[0]} needs {modules[0]}, not installed; pip install 'bertforge[{extra}]'"
    assert err == f"bertforge {args[0]}: error: {needs}"
    with pytest.raises(SystemExit):
        main([args[0], "--help"])
    assert f"pip install 'bertforge[{extra}]'" in capsys.readouterr().out  # said in --help too


def test_chinese_whole_word_masking_names_the_data_extra(without):
    from bertforge.data.documents import _jieba
    from bertforge.errors import BertforgeError

    without("jieba")
    _jieba.cache_clear()  # an earlier test may have loaded it
    try:
        with pytest.raises(BertforgeError, match=r"jieba is not installed; pip install 'bertforge\[data\]'"):
            _jieba()
    finally:
        _jieba.cache_clear()
