"""The errors a user can cause. Entry points print them as one line and exit non-zero."""

from __future__ import annotations


class SparsegError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class InputError(SparsegError):
    """An input file or folder is missing, unreadable or not what the method needs."""


class OutputError(SparsegError):
    """An output cannot be written."""


class ConfigError(SparsegError, ValueError):
    """A config field with an unknown name or an impossible value, named by its dotted path ("train.epochs")."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}" if field else problem)

    def within(self, section: str) -> ConfigError:
        """The same error, its field named inside `section`."""
        return ConfigError(f"{section}.{self.field}" if self.field else section, self.problem)
