"""Exceptions the command line turns into one clean line and an exit status."""

import signal


class BertforgeError(ValueError):
    """Raised with a message that names the file/record and what was expected; the CLI prints it cleanly."""


class Interrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after saving what it needs to continue with --resume. The command
    exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a killed job."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name
