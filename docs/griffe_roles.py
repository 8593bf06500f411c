"""Griffe extension for the API reference: Sphinx cross-reference roles in docstrings
(``:class:`Column```, ``:func:`~jaxlem.market.clear```) become Markdown code spans, so they
read as names instead of raw markup (``~`` keeps the last component, as in Sphinx)."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:attr|meth|class|func|data|mod|obj|exc|const):`(?P<target>[^`]+)`")


def _code(match: re.Match) -> str:
    target = match.group("target").strip()
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRolesToCode(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: ARG002
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)
