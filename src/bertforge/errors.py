"""The one exception type for problems a user can fix (bad input, missing files, mismatched weights)."""


class BertforgeError(ValueError):
    """Raised with a message that names the file/record and what was expected; the CLI prints it cleanly."""
