"""The built-in models; each module exposes ``MODEL`` and is registered in the
``slidestore.models`` entry-point group like any lab's plugin.

This package is also what ``slidestore.analysis.models()`` calls: importing a submodule
(``slidestore.analysis.models.tissue``) binds the *package* to the name ``models`` on
``slidestore.analysis``, replacing any function of that name, so the package itself is
made callable and lists the registered models.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slidestore.analysis.model import Model


class _CallableModule(types.ModuleType):
    def __call__(self) -> dict[str, Model[Any]]:
        from slidestore.analysis.registry import models

        return models()


sys.modules[__name__].__class__ = _CallableModule
