"""Errors the kit raises for problems a user can fix, each with a one-line message."""

from __future__ import annotations

import importlib


class MissingDependencyError(ImportError):
    """An optional package a command needs is not installed.

    The message names the package, what needs it and the pip command that installs it,
    so the command line can print it as one ``error:`` line. ``module`` and ``install``
    are kept as attributes.
    """

    def __init__(self, message: str, *, module: str = "", install: str = ""):
        super().__init__(message, name=module or None)
        self.module = module
        self.install = install


def require(module: str, purpose: str, install: str):
    """Import ``module`` or raise :class:`MissingDependencyError`.

    purpose: what needs it ("drawing the view-synthesis figures"); install: the pip command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(f"{purpose} needs the package '{module}', which is not installed; "
                                     f"install it with: {install}", module=module, install=install) from error
