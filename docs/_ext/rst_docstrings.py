"""Griffe extension: render the library's reST idioms in Google-style docstrings.

The docstrings use three reStructuredText constructs that Markdown does not know:

* roles such as :class:`~trio_redisha.Replies`, :meth:`Pool.execute` or
  :data:`NEED_DATA`. Each becomes inline code, linked to its API entry when the
  target is part of the package (resolved like Sphinx: the object's own class,
  then its module and parents, then the top-level package). Links are emitted as
  *optional* autorefs, so a target that no page renders stays plain code instead
  of failing ``mkdocs build --strict``;
* a paragraph ending in ``::`` before a literal block: the ``::`` becomes ``:``,
  written as an entity so that Griffe's Google parser does not mistake the line
  for a section or admonition title;
* "simple tables" (columns between ``===`` rules), turned into Markdown tables.

It also reads Sphinx's ``#:`` doc-comments (on the lines above an assignment, or
at the end of its line) as the docstring of an attribute that has none, so the
documented constants and enum members appear in the reference.

Everything happens on the docstring text before Griffe parses it; the library's
source is not touched.
"""

from __future__ import annotations

import builtins
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(class|meth|func|data|attr|mod|exc|obj|const):`([^`]+)`")
_TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
_RULE = re.compile(r"^\s*=+(?:\s+=+)+\s*$")
_BUILTINS = frozenset(dir(builtins))
_COLON_BEFORE_LITERAL = re.compile(r"(\S)::[ \t]*$|^[ \t]*::[ \t]*$")


def _lookup(pkg: griffe.Module, path: str) -> str | None:
    """The canonical path of the package's object at ``path`` (aliases followed), or None.

    The canonical path is where the object is defined; mkdocstrings registers it
    as a secondary anchor of the object's entry wherever the entry is rendered
    (under its public name, for instance).
    """
    head, _, rest = path.partition(".")
    if head != pkg.name:
        return None
    if not rest:
        return pkg.path
    try:
        return str(pkg[rest].canonical_path)
    except Exception:  # KeyError, AliasResolutionError, CyclicAliasError...
        return None


def _resolve(pkg: griffe.Module, obj: griffe.Object, target: str) -> str | None:
    """Find the canonical path of a role's target as seen from ``obj``, or None."""
    target = target.lstrip(".")
    if target.startswith(pkg.name + ".") or target == pkg.name:
        return _lookup(pkg, target)
    if target.split(".", 1)[0] in _BUILTINS:
        return None  # :class:`set` is the builtin, not the module crdt/set.py
    scope: griffe.Object | None = obj if obj.is_class or obj.is_module else obj.parent
    while scope is not None:
        found = _lookup(pkg, f"{scope.path}.{target}")
        if found is not None:
            return found
        scope = scope.parent
    return None


def _roles(pkg: griffe.Module, obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        role, body = match.group(1), match.group(2).strip()
        titled = _TITLED.match(body)
        if titled:
            title, target = titled["title"], titled["target"].strip()
        else:
            target = body
            short = target.startswith("~")
            target = target.lstrip("~")
            title = target.rsplit(".", 1)[-1] if short else target
            if role in ("meth", "func"):
                title += "()"
        code = "<code>" + title.replace("&", "&amp;").replace("<", "&lt;") + "</code>"
        path = _resolve(pkg, obj, target.lstrip("~"))
        if path is None:
            return code
        return f'<autoref identifier="{path}" optional>{code}</autoref>'

    return _ROLE.sub(replace, text)


def _literal_colons(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return "" if match.group(1) is None else match.group(1) + "&#58;"

    return "\n".join(_COLON_BEFORE_LITERAL.sub(replace, line) for line in text.split("\n"))


def _cell(text: str) -> str:
    """A table cell's text, with pipes outside code spans escaped."""
    parts = re.split(r"(`+[^`]*`+)", text.strip())
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in parts)


def _tables(text: str) -> str:
    """Turn reST simple tables (rule, header, rule, rows, rule) into Markdown."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not _RULE.match(line) or i + 2 >= len(lines) or not _RULE.match(lines[i + 2]):
            out.append(line)
            i += 1
            continue
        starts = [m.start() for m in re.finditer(r"=+", line)]
        indent = line[: len(line) - len(line.lstrip())]

        def split(row: str, starts: list[int] = starts) -> list[str]:
            bounds = [*starts[1:], None]
            return [row[a:b] for a, b in zip(starts, bounds, strict=True)]

        header = [_cell(c) for c in split(lines[i + 1])]
        rows: list[list[str]] = []
        j = i + 3
        while j < len(lines) and not _RULE.match(lines[j]):
            if lines[j].strip():
                cells = split(lines[j])
                if rows and not cells[0].strip():
                    # A continuation line: its text joins the row above.
                    pairs = zip(rows[-1], cells, strict=True)
                    rows[-1] = [f"{old} {_cell(new)}".strip() for old, new in pairs]
                else:
                    rows.append([_cell(c) for c in cells])
            j += 1
        out.append(indent + "| " + " | ".join(header) + " |")
        out.append(indent + "|" + "---|" * len(header))
        out.extend(indent + "| " + " | ".join(r) + " |" for r in rows)
        i = j + 1
    return "\n".join(out)


def _doc_comment(attr: griffe.Object) -> griffe.Docstring | None:
    """The ``#:`` comment documenting an attribute, as a docstring, or None."""
    lineno = attr.lineno
    try:
        lines = attr.module.lines
    except Exception:
        return None
    if not lineno or lineno > len(lines):
        return None
    own = lines[lineno - 1]
    trailing = re.search(r"#:\s?(.*)$", own)
    if trailing and trailing.group(1).strip():
        return griffe.Docstring(trailing.group(1).strip(), lineno=lineno, parent=attr)
    above: list[str] = []
    n = lineno - 2
    while n >= 0 and lines[n].lstrip().startswith("#:"):
        above.append(lines[n].lstrip()[2:].removeprefix(" "))
        n -= 1
    if not above:
        return None
    return griffe.Docstring("\n".join(reversed(above)), lineno=n + 2, parent=attr)


class RstDocstrings(griffe.Extension):
    """Rewrite the reST idioms of every docstring in the package, once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is None and obj.is_attribute:
                obj.docstring = _doc_comment(obj)
            if obj.docstring is not None:
                text = obj.docstring.value
                text = _tables(text)
                text = _literal_colons(text)
                obj.docstring.value = _roles(pkg, obj, text)
            stack.extend(m for m in obj.members.values() if isinstance(m, griffe.Object))
