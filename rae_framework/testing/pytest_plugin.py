"""pytest plugin (entry point ``pytest11``): lets plugin authors run rae-framework's contract tests.

``--rae-contract-plugin NAME`` (repeatable) restricts the contract test classes of
:mod:`rae_framework.testing` to the components registered by the named plugins (entry-point name or
distribution name), e.g. ``pytest --pyargs rae_framework.testing.suite --rae-contract-plugin patch_mean``.
Importing this module is cheap and never imports torch: pytest loads it in every session.
"""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    """Add the ``--rae-contract-plugin`` option."""
    group = parser.getgroup("rae-framework", "rae-framework contract tests")
    group.addoption("--rae-contract-plugin", action="append", default=[], metavar="NAME",
                    help="Run the contract tests only on the components of this plugin (entry-point or "
                         "distribution name); repeatable.")
