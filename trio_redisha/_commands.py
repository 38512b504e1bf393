"""Where a command's keys are, read from Redis's own key specs.

Placement sends a keyed command to its keys' owners, so it must know which
arguments are keys: the key of ``GET k`` is its first argument, but ``EVAL``'s
keys follow a count, ``MSET``'s are every other argument, ``XREAD``'s follow
``STREAMS``, ``SORT``'s destination follows ``STORE`` anywhere. Guessing "the
first argument" routes those wrongly. Redis 7 describes every command's keys as
*key specs* (``COMMAND INFO``); the generated table in ``_command_table`` holds
them, and :func:`command_keys` interprets them exactly as the server's
``COMMAND GETKEYS`` does: the key specs first, and for the few commands whose
specs are incomplete, or when the specs do not fit the arguments, the same
command-specific rules the server falls back to (``SORT``, ``MIGRATE``,
``GEORADIUS``, the ``numkeys`` commands...).

A command this table does not know raises :class:`UnsupportedCommand`: its keys
cannot be found, so it cannot be routed. So does a command whose arguments do not
fit its arity or leave its keys undefined (Redis would reject it anyway).

This module is pure: no I/O, no trio.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ._command_table import COMMANDS as _TABLE
from ._command_table import CONTAINERS as _CONTAINERS
from ._command_table import REDIS_VERSION as REDIS_VERSION
from ._command_table import Entry, Spec
from .exceptions import CommandEncodeError, CrossSlotError, UnsupportedCommand
from .resp import arg_bytes

__all__ = ["REDIS_VERSION", "CommandInfo", "command_info", "command_keys", "pattern_keys"]

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
# string2ll's grammar: "0", or an optional "-" and digits without a leading zero.
_STRICT_INT: Final = re.compile(rb"0|-?[1-9][0-9]*")
# atoi's: leading white space, an optional sign, digits; the rest is ignored.
_LOOSE_INT: Final = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")

Positions = list[int]
Fallback = Callable[[Sequence[bytes]], Positions]


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """What Redis says about one command or subcommand.

    Attributes:
        name: Lower-case, ``container|sub`` for a subcommand (``"object|encoding"``).
        arity: Exact number of arguments counting the name when positive, the
            minimum when negative.
        flags: Command flags (``"readonly"``, ``"write"``, ``"blocking"``,
            ``"no_mandatory_keys"``, ``"movablekeys"``...).
        acl_categories: ACL categories (``"@read"``, ``"@connection"``...).
        tips: Hints for clients (``"request_policy:all_shards"``...).
        group: The group of ``COMMAND DOCS`` (``"string"``, ``"server"``...).
        key_specs: The raw key specs (see ``_command_table``).
    """

    name: str
    arity: int
    flags: frozenset[str]
    acl_categories: frozenset[str]
    tips: tuple[str, ...]
    group: str
    key_specs: tuple[Spec, ...]
    #: The key specs compiled for :func:`command_keys`.
    compiled: tuple[Compiled, ...]
    #: The one key's position when the command has a single fixed key (GET, HSET...).
    single_key: int
    #: Whether the command may have keys at all.
    has_keys: bool
    fallback: Fallback | None


def _strict_int(arg: bytes) -> int | None:
    if _STRICT_INT.fullmatch(arg) is None:
        return None
    value = int(arg)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _atoi(arg: bytes) -> int:
    """C's atoi as glibc does it: strtol clamped to long, then truncated to int."""
    match = _LOOSE_INT.match(arg)
    if match is None:
        return 0
    value = max(_INT64_MIN, min(_INT64_MAX, int(match.group(1))))
    return ((value + (1 << 31)) % (1 << 32)) - (1 << 31)


def _cdiv(a: int, b: int) -> int:
    """C's integer division (truncates towards zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


# A key spec compiled for the hot path: (skip, incomplete, begin kind, begin
# argument, keyword, find kind, and find's three numbers). Kinds: 0 unknown,
# 1 index / range, 2 keyword / keynum.
Compiled = tuple[bool, bool, int, int, bytes, int, int, int, int]


def _compile(spec: Spec) -> Compiled:
    flags, bs, fk = spec
    bs_kind = {"index": 1, "keyword": 2}.get(str(bs[0]), 0)
    bs_arg = int(bs[1]) if bs_kind == 1 else int(bs[2]) if bs_kind == 2 else 0
    keyword = str(bs[1]).upper().encode() if bs_kind == 2 else b""
    fk_kind = {"range": 1, "keynum": 2}.get(str(fk[0]), 0)
    a, b, c = (int(fk[1]), int(fk[2]), int(fk[3])) if fk_kind else (0, 0, 0)
    return ("not_key" in flags, "incomplete" in flags, bs_kind, bs_arg, keyword, fk_kind, a, b, c)


def _specs_positions(specs: tuple[Compiled, ...], args: Sequence[object]) -> Positions | None:
    """Redis's getKeysUsingKeySpecs: the key positions, or None when a spec fails."""
    argc = len(args)
    out: Positions = []
    for skip, incomplete, bs_kind, bs_arg, keyword, fk_kind, a, b, c in specs:
        if skip:
            continue
        if bs_kind == 1:
            first = bs_arg
        elif bs_kind == 2:
            start = bs_arg if bs_arg > 0 else argc + bs_arg
            end = argc - 1 if bs_arg > 0 else 1
            step = 1 if start <= end else -1
            first = 0
            i = start
            while i != end:
                if i >= argc or i < 1:
                    break
                if arg_bytes(i, args[i]).upper() == keyword:  # ASCII-only, as strcasecmp
                    first = i + 1
                    break
                i += step
            if not first:
                continue  # keyword absent: this spec names no key
        else:
            return None
        if fk_kind == 1:  # range: a = lastkey, b = keystep, c = limit
            keystep = b
            if a >= 0:
                last = first + a
            elif not c:
                last = argc + a
            else:
                last = first + _cdiv(argc - first, c) + a
        elif fk_kind == 2:  # keynum: a = keynumidx, b = firstkey, c = keystep
            keystep = c
            if first + a >= argc:
                return None
            count = args[first + a]
            # An int is sent as its decimal text, which string2ll reads back as is.
            numkeys = count if type(count) is int else _strict_int(arg_bytes(first + a, count))
            if numkeys is None or not 0 <= numkeys <= _INT64_MAX:
                return None
            first += b
            last = first + numkeys - 1
        else:
            return None
        if last >= argc or last < first or first >= argc:
            return None
        out.extend(range(first, last + 1, keystep))
        if incomplete:
            return None
    return out


# ---------------------------------------------------------------- fallbacks
# The server's own getkeys procedures, used when the specs fail (as it does).


def _generic(store: int, count_at: int, first: int, step: int = 1) -> Fallback:
    def keys(argv: Sequence[bytes]) -> Positions:
        num = _atoi(argv[count_at]) if count_at < len(argv) else 0
        if num < 1 or num > _cdiv(len(argv) - first, step):
            return []
        found = [first + i * step for i in range(num)]
        return [*found, store] if store else found

    return keys


def _sort_keys(argv: Sequence[bytes]) -> Positions:
    store = 0
    i = 2
    while i < len(argv):
        arg = argv[i].lower()
        if arg == b"limit":
            i += 2
        elif arg == b"store" and i + 1 < len(argv):
            store = i + 1  # the last STORE wins, as in SORT itself
        elif arg in (b"get", b"by"):
            i += 1
        i += 1
    return [1, store] if store else [1]


def _sort_ro_keys(argv: Sequence[bytes]) -> Positions:
    return [1]


def _migrate_keys(argv: Sequence[bytes]) -> Positions:
    first, num = 3, 1
    skips = {b"copy": 0, b"replace": 0, b"auth": 1, b"auth2": 2}
    if len(argv) > 6:
        i = 6
        while i < len(argv):
            arg = argv[i].lower()
            if arg == b"keys":
                if argv[3]:
                    return []  # KEYS needs the single-key argument empty
                first = i + 1
                num = len(argv) - first
                break
            i += skips.get(arg, 0) + 1
    return list(range(first, first + num))


def _georadius_keys(argv: Sequence[bytes]) -> Positions:
    stored = -1
    i = 5
    while i < len(argv):
        if argv[i].lower() in (b"store", b"storedist") and i + 1 < len(argv):
            stored = i + 1
            i += 1
        i += 1
    return [1] if stored < 0 else [1, stored]


def _xread_keys(argv: Sequence[bytes]) -> Positions:
    streams = -1
    i = 1
    while i < len(argv):
        arg = argv[i].lower()
        if arg in (b"block", b"count"):
            i += 1
        elif arg == b"group":
            i += 2
        elif arg == b"noack":
            pass
        elif arg == b"streams":
            streams = i
            break
        else:
            break
        i += 1
    num = len(argv) - streams - 1
    if streams < 0 or num == 0 or num % 2:
        return []
    return list(range(streams + 1, streams + 1 + num // 2))


_FALLBACKS: Final[dict[str, Fallback]] = {
    "sort": _sort_keys,
    "sort_ro": _sort_ro_keys,
    "migrate": _migrate_keys,
    "georadius": _georadius_keys,
    "georadiusbymember": _georadius_keys,
    "xread": _xread_keys,
    "xreadgroup": _xread_keys,
    **dict.fromkeys(("eval", "evalsha", "eval_ro", "evalsha_ro"), _generic(0, 2, 3)),
    **dict.fromkeys(("fcall", "fcall_ro"), _generic(0, 2, 3)),
    **dict.fromkeys(("zunion", "zinter", "zdiff", "zintercard"), _generic(0, 1, 2)),
    **dict.fromkeys(("zunionstore", "zinterstore", "zdiffstore"), _generic(1, 2, 3)),
    **dict.fromkeys(("lmpop", "zmpop", "sintercard"), _generic(0, 1, 2)),
    **dict.fromkeys(("blmpop", "bzmpop"), _generic(0, 2, 3)),
}


#: Commands whose arguments hold key patterns (``SORT ... BY w_* GET o_*``).
_PATTERNED: Final = frozenset({"sort", "sort_ro"})


def _pattern_slot_tag(pattern: bytes) -> bytes | None:
    """The hash tag every key ``pattern`` can name shares, as Redis Cluster's
    ``patternHashSlot`` finds it: a ``{tag}`` closed before any wildcard
    (``*?[``) or escape; else None (its keys can be in any partition)."""
    start = -1
    for i, c in enumerate(pattern):
        if c in b"*?[\\":
            return None
        if start < 0 and c == 0x7B:  # {
            start = i
        elif start >= 0 and c == 0x7D:  # }
            return None if i == start + 1 else pattern[start + 1 : i]
    return None


def pattern_keys(args: Sequence[object]) -> list[bytes]:
    """Keys standing for those ``SORT``'s ``BY`` and ``GET`` patterns read, for routing.

    With placement a command goes to its key's owners, which hold only their
    own partitions: a pattern's keys must be in the key's (a hash tag, as in
    Redis Cluster, which refuses such a ``SORT`` otherwise). Each pattern that
    names keys (it holds a ``*``; ``GET #`` and ``BY nosort`` name none)
    gives its tag, as a key (``{tag}``) whose owners the caller checks as it
    checks the command's keys. Other commands give ``[]``.

    Raises:
        CrossSlotError: A pattern has no hash tag: its keys can be anywhere.
    """
    if len(args) < 4:
        return []
    name = args[0]
    text = (
        bytes(name).decode("latin-1")
        if isinstance(name, (bytes, bytearray, memoryview))
        else name
        if isinstance(name, str)
        else ""
    ).lower()
    if text not in _PATTERNED:
        return []
    out: list[bytes] = []
    i = 2
    while i < len(args):
        word = arg_bytes(i, args[i]).lower()
        if word == b"limit":
            i += 3
            continue
        if word in (b"by", b"get") and i + 1 < len(args):
            pattern = arg_bytes(i + 1, args[i + 1])
            if b"*" in pattern:  # as Redis: without one, no key is read
                tag = _pattern_slot_tag(pattern)
                if tag is None:
                    # The position, not the pattern: as for keys, an error never
                    # shows what they hold (a pattern names keys: an email, an id).
                    raise CrossSlotError(
                        f"{text.upper()}: the {word.decode().upper()} pattern (argument"
                        f" {i + 1}) names keys on other servers; give it the key's"
                        " hash tag, e.g. SORT {user42}:ids BY {user42}:w_*",
                        command=text.upper(),
                    )
                out.append(b"{" + tag + b"}")
            i += 2
            continue
        i += 1
    return out


def _build(name: str, entry: Entry) -> CommandInfo:
    arity, flags, acl, tips, group, specs_t = entry
    flag_set = frozenset(flags)
    single = 0
    # SORT's BY and GET patterns name keys too (pattern_keys): no fast path.
    if len(specs_t) == 1 and "movablekeys" not in flag_set and name not in _PATTERNED:
        sflags, bs, fk = specs_t[0]
        plain = "incomplete" not in sflags and "not_key" not in sflags
        if plain and bs[0] == "index" and fk[0] == "range" and fk[1] == 0:
            single = int(bs[1])
    return CommandInfo(
        name=name,
        arity=arity,
        flags=flag_set,
        acl_categories=frozenset(acl),
        tips=tuple(tips),
        group=group,
        key_specs=specs_t,
        compiled=tuple(_compile(spec) for spec in specs_t),
        single_key=single,
        has_keys=any("not_key" not in s[0] for s in specs_t) or name in _FALLBACKS,
        fallback=_FALLBACKS.get(name),
    )


COMMANDS: Final[dict[str, CommandInfo]] = {
    name: _build(name, entry) for name, entry in _TABLE.items()
}
CONTAINERS: Final = _CONTAINERS


def _name(arg: object) -> str:
    if type(arg) is str:
        return arg.lower()
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return bytes(arg).decode("latin-1").lower()
    if isinstance(arg, str):
        return str(arg).lower()
    raise CommandEncodeError(f"the command name must be str or bytes, got {type(arg).__name__}")


def command_info(args: Sequence[object]) -> CommandInfo:
    """Return what Redis says about the command (the subcommand for a container).

    Args:
        args: The command: its name and its arguments.

    Raises:
        UnsupportedCommand: The command is empty, unknown, an unknown subcommand,
            or its number of arguments does not fit its arity.
        CommandEncodeError: The name is neither str nor bytes.
    """
    if not args:
        raise UnsupportedCommand("empty command")
    name = _name(args[0])
    if name in CONTAINERS and len(args) > 1:
        sub = arg_bytes(1, args[1]).decode("latin-1").lower()
        info = COMMANDS.get(f"{name}|{sub}")
        if info is None:
            raise UnsupportedCommand(
                f"unknown subcommand {sub!r} of {name.upper()} (Redis {REDIS_VERSION}'s table)"
            )
    else:
        info = COMMANDS.get(name)
        if info is None:
            raise UnsupportedCommand(
                f"unknown command {name!r} (not in Redis {REDIS_VERSION}'s table): "
                "its keys cannot be found, so it cannot be routed"
            )
    argc = len(args)
    arity = info.arity
    if (arity > 0 and argc != arity) or argc < -arity:
        raise UnsupportedCommand(f"wrong number of arguments for {info.name!r}")
    return info


def command_keys(args: Sequence[object]) -> list[bytes]:
    """Return the command's keys, in the order ``COMMAND GETKEYS`` gives them.

    Keys are returned as the bytes that will be sent (``str`` as UTF-8, ``int``
    as its decimal text). A keyless command (``PING``, ``INFO``, ``EVAL s 0``)
    returns ``[]``.

    Args:
        args: The command: its name and its arguments.

    Raises:
        UnsupportedCommand: The command is unknown, its arguments do not fit its
            arity, or they leave its keys undefined (a key count that is not a
            number, ``XREAD`` without ``STREAMS``...): Redis would reject it.
        CommandEncodeError: An argument is not str, bytes, int or float.
    """
    info = command_info(args)
    single = info.single_key
    if single and single < len(args):
        return [arg_bytes(single, args[single])]
    if not info.has_keys:
        return []
    positions = _specs_positions(info.compiled, args)
    if positions is None:
        if info.fallback is None:
            raise UnsupportedCommand(f"cannot find the keys of this {info.name!r} command")
        positions = info.fallback([arg_bytes(i, a) for i, a in enumerate(args)])
    if not positions:
        if "no_mandatory_keys" in info.flags:
            return []
        raise UnsupportedCommand(
            f"cannot find the keys of this {info.name!r} command: Redis would reject its arguments"
        )
    return [arg_bytes(i, args[i]) for i in positions]
