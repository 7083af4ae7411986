"""Typed event data: turning what a queue hands back (JSON-decoded values) into the class
a subscription asked for with ``data=``.

Four kinds of class are accepted. msgspec Structs and pydantic models are validated by
their own library (``msgspec.convert``, ``Model.model_validate``), imported only when
such a class is given, so that neither is a dependency of reactor. attrs classes and
dataclasses are built by the small converter below, which is strict on purpose:

* the data must be a mapping (or already an instance of the class, as an event published
  in-process may carry); its keys are the attribute names, keys of no field are ignored
  (as msgspec and pydantic ignore them by default), a field without a default is required;
* values are checked against the field's annotation without coercion (``"1"`` is no
  ``int``), except the ones JSON cannot carry: an ``int`` is accepted for a ``float``, a
  list for a tuple, set or frozenset, an ISO 8601 string for a ``datetime``, ``date``,
  ``time``, a string for a ``UUID`` or ``Decimal``, a value for an ``Enum``;
* annotations understood: ``Any``, ``object``, ``None``, ``bool``, ``int``, ``float``,
  ``str``, unions and ``Optional``, ``Literal``, ``Annotated``, ``list``, ``tuple``,
  ``set``, ``frozenset``, ``dict`` and their ``collections.abc`` kinds, the types named
  above, and nested attrs classes, dataclasses, Structs and models; any other class must
  be matched by an instance of it (``isinstance``);
* what the class's own ``__init__`` raises (an attrs validator, ``__post_init__``) is a
  validation failure too.

The first mismatch found is reported with its path (``data.items[0].sku``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
import uuid
import weakref
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import attrs

from ._exceptions import DataValidationError

__all__ = ["data_converter"]

T = TypeVar("T")

_NoneType = type(None)


class _Mismatch(Exception):
    """A value that does not fit, where (``path``) and why."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _library_of(cls: type) -> str | None:
    """``"msgspec"`` or ``"pydantic"`` when *cls* is a Struct or a model, without importing
    either library unless one of *cls*'s bases comes from it."""
    for base in cls.__mro__:
        top = base.__module__.partition(".")[0]
        if top == "msgspec":
            import msgspec

            if issubclass(cls, msgspec.Struct):
                return "msgspec"
        elif top == "pydantic":
            import pydantic

            if issubclass(cls, pydantic.BaseModel):
                return "pydantic"
    return None


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _type_name(tp: object) -> str:
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def data_converter(
    cls: type[T], namespace: Mapping[str, Any] | None = None
) -> Callable[[object], T]:
    """Return ``convert(data) -> instance of cls`` for a subscription's ``data=cls``.

    :param cls: an attrs class, a dataclass, a msgspec Struct or a pydantic model
    :param namespace: where to look up the names in string annotations that the class's
        module does not define (the handler's globals: code run by ``exec``, a notebook)
    :return: a function that raises :class:`~reactor.DataValidationError` for data that
        does not fit
    :raises TypeError: *cls* is none of those, or its annotations cannot be resolved
    """
    if not isinstance(cls, type):
        raise TypeError(
            f"data= takes a class (an attrs class, a dataclass, a msgspec.Struct or a "
            f"pydantic model), got {cls!r}"
        )
    library = _library_of(cls)
    if library == "msgspec":
        return _msgspec_converter(cls)
    if library == "pydantic":
        return _pydantic_converter(cls)
    if not (attrs.has(cls) or dataclasses.is_dataclass(cls)):
        raise TypeError(
            f"data= takes an attrs class, a dataclass, a msgspec.Struct or a pydantic "
            f"model, got {cls.__qualname__}"
        )
    build = _Builder.of(cls, namespace)  # a wrong annotation fails now, at subscribe

    def convert(data: object) -> T:
        try:
            return typing.cast(T, build(data, "data"))
        except _Mismatch as exc:
            raise DataValidationError(cls, str(exc)) from None

    return convert


def _msgspec_converter(cls: type[T]) -> Callable[[object], T]:
    import msgspec

    def convert(data: object) -> T:
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            # msgspec's message ends with its own path ("... - at `$.items[0]`").
            raise DataValidationError(cls, str(exc)) from exc

    return convert


def _pydantic_converter(cls: type[T]) -> Callable[[object], T]:
    import pydantic

    validate: Callable[[object], T] = cls.model_validate  # type: ignore[attr-defined]

    def convert(data: object) -> T:
        try:
            return validate(data)
        except pydantic.ValidationError as exc:
            raise DataValidationError(cls, _pydantic_detail(exc)) from exc

    return convert


def _pydantic_detail(error: Any) -> str:
    parts = []
    for item in error.errors(include_url=False):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        parts.append(f"data{path}: {item['msg']}")
    return "; ".join(parts) or str(error)


@attrs.frozen
class _Field:
    key: str  # the key in the data: the attribute's name
    argument: str  # the __init__ argument (attrs strips a leading underscore)
    type: Any
    required: bool


class _Builder:
    """Builds instances of one attrs class or dataclass from mappings."""

    _cache: typing.ClassVar[weakref.WeakKeyDictionary[type, _Builder]] = weakref.WeakKeyDictionary()

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.fields: tuple[_Field, ...] = ()

    def _resolve(self, namespace: Mapping[str, Any] | None) -> None:
        cls = self.cls
        try:
            hints = typing.get_type_hints(cls, localns=dict(namespace or {}), include_extras=True)
        except Exception as exc:
            raise TypeError(
                f"the annotations of {cls.__qualname__} cannot be resolved ({exc}); "
                "define the classes they name at module level"
            ) from exc
        if attrs.has(cls):
            fields = [
                _Field(
                    key=a.name,
                    argument=a.alias or a.name,
                    type=hints.get(a.name, Any),
                    required=a.default is attrs.NOTHING,
                )
                for a in attrs.fields(cls)
                if a.init
            ]
        else:
            fields = [
                _Field(
                    key=f.name,
                    argument=f.name,
                    type=hints.get(f.name, Any),
                    required=f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING,
                )
                for f in dataclasses.fields(cls)
                if f.init
            ]
        self.fields = tuple(fields)
        for field in fields:
            _prepare(field.type, namespace)

    @classmethod
    def of(cls, target: type, namespace: Mapping[str, Any] | None = None) -> _Builder:
        """The builder of *target*, its annotations (and those of the classes they name)
        resolved in its module, else in *namespace*."""
        builder = cls._cache.get(target)
        if builder is None:
            # Cached before resolving: a class that names itself (a tree) finds it.
            builder = cls._cache[target] = cls(target)
            try:
                builder._resolve(namespace)
            except BaseException:
                del cls._cache[target]
                raise
        return builder

    def __call__(self, data: object, path: str) -> object:
        target = self.cls
        if isinstance(data, target):
            return data
        if not isinstance(data, Mapping):
            raise _Mismatch(
                path, f"expected an object for {target.__qualname__}, got {_kind(data)}"
            )
        arguments: dict[str, object] = {}
        for field in self.fields:
            if field.key in data:
                where = f"{path}.{field.key}"
                arguments[field.argument] = _value(field.type, data[field.key], where)
            elif field.required:
                raise _Mismatch(path, f"missing required field {field.key!r}")
        try:
            return target(**arguments)
        except Exception as exc:
            raise _Mismatch(
                path, f"{target.__qualname__}() refused it: {type(exc).__name__}: {exc}"
            ) from exc


def _prepare(tp: Any, namespace: Mapping[str, Any] | None) -> None:
    """Build the builders of the attrs classes and dataclasses that *tp* names, now: an
    annotation that cannot be resolved fails when subscribing, not on the first event."""
    if isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp)):
        _Builder.of(tp, namespace)
    for arg in typing.get_args(tp):
        _prepare(arg, namespace)


_ISO_TYPES: dict[type, Callable[[str], object]] = {
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
    uuid.UUID: uuid.UUID,
    Decimal: Decimal,
}


def _value(tp: Any, value: object, path: str) -> object:
    """Check and convert *value* for the annotation *tp*."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _value(args[0], value, path)
    if tp is None or tp is _NoneType:
        if value is None:
            return None
        raise _Mismatch(path, f"expected null, got {_kind(value)}")
    if origin is typing.Union or origin is types.UnionType:
        if value is None and _NoneType in args:
            return None
        for arg in args:
            if arg is _NoneType:
                continue
            try:
                return _value(arg, value, path)
            except _Mismatch:
                continue
        raise _Mismatch(path, f"expected {_type_name(tp)}, got {_kind(value)}")
    if origin is typing.Literal:
        for arg in args:
            if value == arg and type(value) is type(arg):
                return arg
        raise _Mismatch(path, f"expected one of {list(args)!r}, got {value!r}")
    if isinstance(tp, typing.NewType):
        return _value(tp.__supertype__, value, path)
    if isinstance(tp, TypeVar):
        return value
    if origin is not None:
        return _generic(origin, args, value, path)
    if not isinstance(tp, type):
        raise _Mismatch(path, f"cannot check values against {tp!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except ValueError:
            allowed = [member.value for member in tp]
            raise _Mismatch(path, f"expected one of {allowed!r}, got {value!r}") from None
    elif attrs.has(tp) or dataclasses.is_dataclass(tp):
        return _Builder.of(tp)(value, path)
    elif tp in _ISO_TYPES:
        if isinstance(value, tp) and not (tp is dt.date and isinstance(value, dt.datetime)):
            return value
        if isinstance(value, str):
            try:
                return _ISO_TYPES[tp](value)
            except (ValueError, InvalidOperation):
                raise _Mismatch(
                    path, f"expected {tp.__qualname__}, got the string {value!r}"
                ) from None
    elif _library_of(tp) is not None:
        try:
            return data_converter(tp)(value)
        except DataValidationError as exc:
            raise _Mismatch(path, exc.detail) from exc
    elif isinstance(value, tp):
        return value
    raise _Mismatch(path, f"expected {_type_name(tp)}, got {_kind(value)}")


def _generic(origin: Any, args: tuple[Any, ...], value: object, path: str) -> object:
    """Check a container annotation (``list[int]``, ``dict[str, Order]``, ...)."""
    import collections.abc as abc

    if origin in (list, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection):
        if isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            return [_value(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_value(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
            if not args:
                return tuple(value)
            if len(value) != len(args):
                raise _Mismatch(path, f"expected {len(args)} items, got {len(value)}")
            return tuple(
                _value(a, v, f"{path}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
    elif origin in (set, frozenset, abc.Set, abc.MutableSet):
        if isinstance(value, (list, tuple, set, frozenset)):
            item = args[0] if args else Any
            items = [_value(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
            return frozenset(items) if origin in (frozenset, abc.Set) else set(items)
    elif origin in (dict, abc.Mapping, abc.MutableMapping):
        if isinstance(value, Mapping):
            key_type, item_type = args if args else (Any, Any)
            return {
                _value(key_type, k, f"{path}[{k!r}]"): _value(item_type, v, f"{path}[{k!r}]")
                for k, v in value.items()
            }
    else:
        raise _Mismatch(path, f"cannot check values against {origin!r}[...]")
    raise _Mismatch(path, f"expected {origin.__name__}, got {_kind(value)}")
