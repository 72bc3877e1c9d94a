"""The errors a user can cause. Entry points print them as one line and exit non-zero."""


class SparsegError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class InputError(SparsegError):
    """An input file or folder is missing, unreadable or not what the method needs."""


class OutputError(SparsegError):
    """An output cannot be written."""
