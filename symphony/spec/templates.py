"""Path and argument templates: literal text and plain ``{name}`` placeholders, nothing else.

A template is filled with ``str.format``-style placeholders, but only plain names are allowed:
a format spec (``{root:>200000000}``), a conversion (``{item!r}``), attribute or index access
(``{x.y}``, ``{x[0]}``) and positional fields (``{}``, ``{0}``) are refused when the file is
parsed, so that filling a template later costs no more than its length. ``{{`` and ``}}`` are
literal braces.
"""
from __future__ import annotations

import string
from typing import Iterable, Mapping

_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """Why a template is not acceptable (the message names the placeholder)."""


def placeholders(template: str) -> list[str]:
    """The names of ``template``'s placeholders, in order; :class:`TemplateError` if one is not plain."""
    names = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:  # a lone brace
        raise TemplateError(f"bad placeholder in {template!r}: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise TemplateError(f"placeholder {{{_short(shown)}}} in {_short(template)!r} is not a plain name: "
                                "format specs, conversions, attribute or index access are not allowed; "
                                "write {name}")
        names.append(name)
    return names


def check(template: str, known: Iterable[str], where: str = "") -> list[str]:
    """Placeholders of ``template``, each of which must be in ``known``."""
    names = placeholders(template)
    allowed = set(known)
    for name in names:
        if name not in allowed:
            raise TemplateError(f"unknown placeholder {{{name}}}{where} (known: {', '.join(sorted(allowed))})")
    return names


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with the placeholders named in ``values`` replaced, the others kept (as
    ``{name}``); the values' own braces are escaped, so the result is again a template."""
    out = []
    for literal, name, _, _ in _FORMATTER.parse(template):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is None:
            continue
        if name in values:
            out.append(str(values[name]).replace("{", "{{").replace("}", "}}"))
        else:
            out.append("{" + name + "}")
    return "".join(out)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
