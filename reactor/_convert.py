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
  be matched by an instance of it (``isinstance``), and any other annotation (a
  ``Callable``) is refused when subscribing;
* what the class's own ``__init__`` raises (an attrs validator, ``__post_init__``) is a
  validation failure too.

The first mismatch found is reported with its path (``data.items[0].sku``). The checks
are built once per class, when subscribing, as closures per annotation: converting an
event costs calls and ``isinstance`` tests, no look at the annotations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
import uuid
import weakref
from collections import abc
from collections.abc import Callable, Hashable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import attrs

from ._exceptions import DataValidationError

__all__ = ["data_converter"]

T = TypeVar("T")

_NoneType = type(None)


class _Mismatch(Exception):
    """A value that does not fit: why, and where (the path is built as the error goes out
    through the containers, so that values that fit pay nothing for it)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.segments: list[str] = []

    def at(self, segment: str) -> _Mismatch:
        """Add the place in the enclosing container (``.key``, ``[0]``); return self."""
        self.segments.append(segment)
        return self

    def where(self) -> str:
        """The path from the data to the value that does not fit, and why."""
        return f"data{''.join(reversed(self.segments))}: {self.problem}"


#: Checks one value against one annotation and returns it converted, or raises _Mismatch.
_Check = Callable[[Any], Any]


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
            return typing.cast(T, build(data))
        except _Mismatch as exc:
            raise DataValidationError(cls, exc.where()) from None

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
    check: _Check
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
                    check=_compile(hints.get(a.name, Any), namespace),
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
                    check=_compile(hints.get(f.name, Any), namespace),
                    required=f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING,
                )
                for f in dataclasses.fields(cls)
                if f.init
            ]
        self.fields = tuple(fields)

    @classmethod
    def of(cls, target: type, namespace: Mapping[str, Any] | None = None) -> _Builder:
        """The builder of *target*, its annotations (and those of the classes they name)
        resolved in its module, else in *namespace*: now, so that an annotation that cannot
        be resolved fails when subscribing, not on the first event."""
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

    def __call__(self, data: object) -> object:
        target = self.cls
        if type(data) is not dict:  # (what JSON gives: no look at the ABCs)
            if isinstance(data, target):
                return data
            if not isinstance(data, Mapping):
                raise _Mismatch(f"expected an object for {target.__qualname__}, got {_kind(data)}")
        arguments: dict[str, object] = {}
        for field in self.fields:
            key = field.key
            if key in data:
                try:
                    arguments[field.argument] = field.check(data[key])
                except _Mismatch as exc:
                    raise exc.at(f".{key}") from None
            elif field.required:
                raise _Mismatch(f"missing required field {key!r}")
        try:
            return target(**arguments)
        except Exception as exc:
            raise _Mismatch(
                f"{target.__qualname__}() refused it: {type(exc).__name__}: {exc}"
            ) from exc


_ISO_TYPES: dict[type, Callable[[str], object]] = {
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
    uuid.UUID: uuid.UUID,
    Decimal: Decimal,
}


def _same(value: object) -> object:
    return value


def _check_bool(value: object) -> object:
    if isinstance(value, bool):
        return value
    raise _Mismatch(f"expected bool, got {_kind(value)}")


def _check_int(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _Mismatch(f"expected int, got {_kind(value)}")


def _check_float(value: object) -> object:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise _Mismatch(f"expected float, got {_kind(value)}")


def _check_str(value: object) -> object:
    if isinstance(value, str):
        return value
    raise _Mismatch(f"expected str, got {_kind(value)}")


def _check_none(value: object) -> object:
    if value is None:
        return None
    raise _Mismatch(f"expected null, got {_kind(value)}")


_SIMPLE: dict[object, _Check] = {
    Any: _same,
    object: _same,
    bool: _check_bool,
    int: _check_int,
    float: _check_float,
    str: _check_str,
    None: _check_none,
    _NoneType: _check_none,
}


def _compile(tp: Any, namespace: Mapping[str, Any] | None) -> _Check:
    """Return the check of values for the annotation *tp* (built once, per field).

    :raises TypeError: an annotation that values cannot be checked against
    """
    simple = _SIMPLE.get(tp) if isinstance(tp, Hashable) else None
    if simple is not None:
        return simple
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _compile(args[0], namespace)
    if origin is typing.Union or origin is types.UnionType:
        return _union(tp, args, namespace)
    if origin is typing.Literal:
        return _literal(args)
    if isinstance(tp, typing.NewType):
        return _compile(tp.__supertype__, namespace)
    if isinstance(tp, TypeVar):
        return _same
    if origin is not None:
        return _container(origin, args, namespace)
    if not isinstance(tp, type):
        raise TypeError(f"data= cannot check values against the annotation {tp!r}")
    if issubclass(tp, enum.Enum):
        return _enum(tp)
    if attrs.has(tp) or dataclasses.is_dataclass(tp):
        return _Builder.of(tp, namespace)
    if tp in _ISO_TYPES:
        return _iso(tp)
    if _library_of(tp) is not None:
        return _foreign(tp)
    return _instance(tp)


def _union(tp: Any, args: tuple[Any, ...], namespace: Mapping[str, Any] | None) -> _Check:
    optional = _NoneType in args
    members = tuple(_compile(arg, namespace) for arg in args if arg is not _NoneType)
    name = _type_name(tp)

    def check(value: object) -> object:
        if value is None and optional:
            return None
        for member in members:
            try:
                return member(value)
            except _Mismatch:
                continue
        raise _Mismatch(f"expected {name}, got {_kind(value)}")

    return check


def _literal(args: tuple[Any, ...]) -> _Check:
    def check(value: object) -> object:
        for arg in args:
            if value == arg and type(value) is type(arg):
                return arg
        raise _Mismatch(f"expected one of {list(args)!r}, got {value!r}")

    return check


def _enum(tp: type[enum.Enum]) -> _Check:
    def check(value: object) -> object:
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except ValueError:
            allowed = [member.value for member in tp]
            raise _Mismatch(f"expected one of {allowed!r}, got {value!r}") from None

    return check


def _iso(tp: type) -> _Check:
    parse = _ISO_TYPES[tp]
    exact = tp is not dt.date  # a datetime is a date: not what a date field means

    def check(value: object) -> object:
        if isinstance(value, tp) and (exact or not isinstance(value, dt.datetime)):
            return value
        if isinstance(value, str):
            try:
                return parse(value)
            except (ValueError, InvalidOperation):
                raise _Mismatch(f"expected {tp.__qualname__}, got the string {value!r}") from None
        raise _Mismatch(f"expected {tp.__qualname__}, got {_kind(value)}")

    return check


def _foreign(tp: type) -> _Check:
    convert: Callable[[object], object] = data_converter(tp)

    def check(value: object) -> object:
        try:
            return convert(value)
        except DataValidationError as exc:
            raise _Mismatch(exc.detail) from exc

    return check


def _instance(tp: type) -> _Check:
    def check(value: object) -> object:
        if isinstance(value, tp):
            return value
        raise _Mismatch(f"expected {tp.__qualname__}, got {_kind(value)}")

    return check


_SEQUENCES = frozenset({list, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection})
_SETS = frozenset({set, frozenset, abc.Set, abc.MutableSet})
_MAPPINGS = frozenset({dict, abc.Mapping, abc.MutableMapping})


def _container(origin: Any, args: tuple[Any, ...], namespace: Mapping[str, Any] | None) -> _Check:
    """The check of a container annotation (``list[int]``, ``dict[str, Order]``, ...)."""
    if origin in _SEQUENCES or origin in _SETS:
        item = _compile(args[0] if args else Any, namespace)
        kinds: tuple[type, ...] = (list, tuple)
        if origin in _SETS:
            kinds = (list, tuple, set, frozenset)
        make: Callable[[list[Any]], object] = list
        if origin in (frozenset, abc.Set):
            make = frozenset
        elif origin in (set, abc.MutableSet):
            make = set
        name = origin.__name__

        def check_items(value: object) -> object:
            if not isinstance(value, kinds):
                raise _Mismatch(f"expected {name}, got {_kind(value)}")
            out = []
            for i, v in enumerate(typing.cast(abc.Iterable[Any], value)):
                try:
                    out.append(item(v))
                except _Mismatch as exc:
                    raise exc.at(f"[{i}]") from None
            return out if make is list else make(out)

        return check_items
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            items = _container(list, args[:1], namespace)

            def check_variadic(value: object) -> object:
                if not isinstance(value, (list, tuple)):
                    raise _Mismatch(f"expected tuple, got {_kind(value)}")
                return tuple(typing.cast(list[Any], items(value)))

            return check_variadic
        fixed = tuple(_compile(arg, namespace) for arg in args)

        def check_tuple(value: object) -> object:
            if not isinstance(value, (list, tuple)):
                raise _Mismatch(f"expected tuple, got {_kind(value)}")
            if not fixed:
                return tuple(value)
            if len(value) != len(fixed):
                raise _Mismatch(f"expected {len(fixed)} items, got {len(value)}")
            out = []
            for i, (check, v) in enumerate(zip(fixed, value, strict=True)):
                try:
                    out.append(check(v))
                except _Mismatch as exc:
                    raise exc.at(f"[{i}]") from None
            return tuple(out)

        return check_tuple
    if origin in _MAPPINGS:
        key_check = _compile(args[0] if args else Any, namespace)
        value_check = _compile(args[1] if args else Any, namespace)

        def check_mapping(value: object) -> object:
            if type(value) is not dict and not isinstance(value, Mapping):
                raise _Mismatch(f"expected dict, got {_kind(value)}")
            out = {}
            for k, v in value.items():
                try:
                    out[key_check(k)] = value_check(v)
                except _Mismatch as exc:
                    raise exc.at(f"[{k!r}]") from None
            return out

        return check_mapping
    raise TypeError(f"data= cannot check values against {origin!r}[...]")
