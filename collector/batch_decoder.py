"""The batch path's decoder: a whole ``events`` array in one msgspec call (issue 6).

``tagged`` builds, from a profile's event catalog, a decoder of the array as a union of the
catalog's structs tagged by ``event_name``, with the regex patterns taken out (msgspec calls
Python's ``re`` per constrained string); each distinct combination of pattern-constrained values is
then checked once by its ``Kind``. ``plain_payload`` tells which payload structs can be stored as
they are. ``collector/validate.py`` uses both; any batch this cannot take goes the per-event way.
"""

from __future__ import annotations

import operator
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Union

import msgspec
import msgspec.inspect

from schemas.catalog import Event

_PLAIN = (
    msgspec.inspect.StrType, msgspec.inspect.IntType, msgspec.inspect.BoolType,
    msgspec.inspect.FloatType, msgspec.inspect.NoneType, msgspec.inspect.LiteralType,
)


def plain_payload(cls: type) -> bool:
    """A payload struct whose msgpack encoding is that of its ``to_builtins`` dict: only str,
    int, bool, float, None and literal fields (no datetime, UUID, bytes, nested containers)."""
    info = msgspec.inspect.type_info(cls)
    if not isinstance(info, msgspec.inspect.StructType) or info.array_like:
        return False
    for f in info.fields:
        types = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        if not all(isinstance(t, _PLAIN) for t in types):
            return False
    return True



_META_KEYS = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "tz")
_MEMO_CHECKED = 4096  # validated value combinations remembered per event type


class _Unsupported(TypeError):
    pass


def _loosen(tp: Any) -> tuple[Any, Any]:
    """(``tp`` with its regex patterns taken out, what they become): None, a compiled pattern's
    ``search`` (msgspec's own semantics), or (loose struct, [(field, check), ...]).

    msgspec calls Python's ``re`` for every pattern-constrained string it decodes; the batch path
    decodes without them and checks each distinct value once (see ``tagged``).
    """
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *metas = typing.get_args(tp)
        patterns = [m.pattern for m in metas if isinstance(m, msgspec.Meta) and m.pattern]
        if not patterns:
            return tp, None
        if base is not str or len(patterns) != 1:
            raise _Unsupported(tp)
        kept: list[Any] = []
        for m in metas:
            if isinstance(m, msgspec.Meta):
                kw = {k: getattr(m, k) for k in _META_KEYS if getattr(m, k) is not None}
                if kw:
                    kept.append(msgspec.Meta(**kw))
            else:
                kept.append(m)
        loose = Annotated[(str, *kept)] if kept else str  # type: ignore[valid-type]
        return loose, re.compile(patterns[0]).search
    if origin in (Union, types.UnionType):
        members, check = [], None
        for arg in typing.get_args(tp):
            loose, c = _loosen(arg)
            if c is not None:
                if check is not None:
                    raise _Unsupported(tp)
                check = c
            members.append(loose)
        return (Union[tuple(members)], check) if check is not None else (tp, None)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        fields, checks = _loose_fields(tp, skip=None)
        if not checks:
            return tp, None
        cfg = tp.__struct_config__
        if cfg.array_like or cfg.tag is not None:
            raise _Unsupported(tp)
        loose = msgspec.defstruct(
            tp.__name__, fields, kw_only=True, forbid_unknown_fields=cfg.forbid_unknown_fields,
            omit_defaults=cfg.omit_defaults,
        )
        return loose, (loose, checks)
    if origin is not None and any(_loosen(a)[1] is not None for a in typing.get_args(tp)):
        raise _Unsupported(tp)  # a pattern inside a container: not mirrored
    return tp, None


def _loose_fields(cls: type, skip: str | None) -> tuple[list[Any], list[tuple[str, Any]]]:
    fields: list[Any] = []
    checks: list[tuple[str, Any]] = []
    for f in msgspec.structs.fields(cls):
        if f.name == skip:
            continue
        if f.encode_name != f.name:
            raise _Unsupported(cls)
        tp, check = _loosen(f.type)
        if check is not None:
            checks.append((f.name, check))
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, tp, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp))
    return fields, checks


def _paths(checks: list[tuple[str, Any]], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, check in checks:
        if isinstance(check, tuple):
            out += _paths(check[1], prefix + name + ".")
        else:
            out.append((prefix + name, check))
    return out


@dataclass
class Kind:
    """One catalog event as the batch path decodes it."""

    key: tuple[str, int]  # (event_name, event_version)
    values: Callable[[Any], tuple[Any, ...]]  # its pattern-constrained values, in order
    searches: tuple[Callable[[str], Any], ...]  # the pattern each of them must match
    checked: set[tuple[Any, ...]]  # value combinations already found to match

    def admit(self, values: tuple[Any, ...]) -> bool:
        """Whether every string among ``values`` matches its pattern (then remembered)."""
        for value, search in zip(values, self.searches):
            if type(value) is str and not search(value):
                return False
        if len(self.checked) >= _MEMO_CHECKED:
            self.checked.clear()
        self.checked.add(values)
        return True


def tagged(catalog: dict[tuple[str, int], type[Event]]) -> tuple[Any, dict[type, Kind]]:
    """A decoder of a whole ``events`` array in one call: a union of the catalog's structs tagged
    by ``event_name`` (same fields and constraints minus the tag and the regex patterns, which
    ``Kind`` checks per distinct value), and what each decoded struct is.

    Only names with one catalog version take part; any other event fails this decode, and the
    batch then takes the per-event path (which also names every bad event). A struct here accepts
    exactly what its catalog struct accepts once its patterns match (msgspec rejects a repeated
    tag that differs, and defaults are never checked by the catalog decode but are here, which
    can only send a batch to the per-event path), so a batch that passes is one the per-event
    path would accept unchanged.
    """
    by_name: dict[str, list[tuple[str, int]]] = {}
    for key in catalog:
        by_name.setdefault(key[0], []).append(key)
    structs: list[type] = []
    kinds: dict[type, Kind] = {}
    for name, versions in by_name.items():
        if len(versions) != 1:
            continue
        fields, checks = _loose_fields(catalog[versions[0]], skip="event_name")
        tagged = msgspec.defstruct(
            f"Batch{catalog[versions[0]].__name__}", fields, kw_only=True,
            forbid_unknown_fields=False, tag_field="event_name", tag=name,
        )
        paths = _paths(checks) or [("event_version", lambda _: True)]
        getter = operator.attrgetter(*(p for p, _ in paths))
        values = getter if len(paths) > 1 else (lambda ev, g=getter: (g(ev),))
        structs.append(tagged)
        kinds[tagged] = Kind(versions[0], values, tuple(c for _, c in paths), set())
    if not structs:
        return None, kinds
    return msgspec.json.Decoder(list[Union[tuple(structs)]]), kinds  # type: ignore[valid-type]
