"""How reactor's packages give the names they export a public home.

A package keeps its code in private modules and re-exports the public names; these
functions make those names report the package as their module (``reactor.Event``, not
``reactor._event.Event``). ``reactor`` itself binds its names lazily (its ``__getattr__``
calls :func:`adopt`); plugins call :func:`export_from` (re-exported by ``reactor.abc``).
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Mapping, MutableMapping

__all__ = ["adopt", "export_from"]


def export_from(package: str, namespace: Mapping[str, object]) -> None:
    """Make what *package* re-exports from its private modules report *package* as home.

    A package that keeps its code in private modules (``mypkg._source``) and re-exports
    the public names from its ``__init__`` calls ``export_from(__name__, globals())`` at
    its end, as reactor and its plugins do: the names' ``__module__`` becomes the
    package's, so reprs, tracebacks, pickles and stored names say
    ``mypkg.FileSource``, not ``mypkg._source.FileSource``. A class's string
    annotations are resolved first, in the module that wrote them, so that
    ``typing.get_type_hints()`` and ``attrs.resolve_types()`` still work; a class whose
    annotations name something imported only for type checkers (``if TYPE_CHECKING:``)
    keeps them as written, as unresolvable after the move as they were before it.

    :param package: the package's name (``__name__`` in its ``__init__``)
    :param namespace: the package's namespace (``globals()`` in its ``__init__``)
    """
    prefix = f"{package}._"
    for value in list(namespace.values()):
        if not getattr(value, "__module__", "").startswith(prefix):
            continue
        if isinstance(value, type):
            own = inspect.get_annotations(value)
            if own:
                try:
                    hints = typing.get_type_hints(value, include_extras=True)
                except NameError:
                    pass  # a name imported for type checkers only: nothing to resolve
                else:
                    value.__annotations__ = {name: hints[name] for name in own}
        value.__module__ = package


def adopt(package: str, namespace: MutableMapping[str, object], homes: Mapping[str, str]) -> None:
    """Bind in *namespace* every name of *homes* whose module is imported, exported.

    :param package: the package's name (``__name__`` in its ``__init__``)
    :param namespace: the package's namespace (``globals()`` in its ``__init__``)
    :param homes: each name the package exports, and the private module (relative to the
        package) that defines it
    """
    found: dict[str, object] = {}
    for name, home in homes.items():
        if name in namespace:
            continue
        module = sys.modules.get(f"{package}.{home}")
        if module is not None and hasattr(module, name):  # not a module half imported
            found[name] = getattr(module, name)
    export_from(package, found)
    namespace.update(found)
