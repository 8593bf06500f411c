"""MkDocs hook: tables of an env's observation, action, params and static settings, generated
from the code at build time, so the pages cannot drift from it.

A page asks for a table with an HTML comment on its own line::

    <!-- table: lem-v0 observation -->
    <!-- table: lem-v0 action -->
    <!-- table: lem-v0 params -->
    <!-- table: lem-v0 settings -->

Words after the kind are static settings passed to ``jaxlem.make`` (``global_obs=True``,
values read with ``ast.literal_eval``); the word ``extra`` then keeps only the observation or
action columns beyond those of the env with default settings (the columns an option adds).

Sources:

- observation / action: ``env.observation_columns()``, ``env.action_columns()`` (``Column(name,
  doc)``) and ``env.action_layout()``;
- params: the fields of ``type(env.default_params)`` with the shape, dtype and (when small) value
  of the default, described by the trailing ``# comment`` of the field's line in the class
  source; a comment on lines of its own titles the fields below it, up to the next blank line
  or titling comment (or describes the field when it is the only one there);
- settings: ``dataclasses.fields(env)`` of the frozen env, with their defaults, described the
  same way from the env class's source.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import logging
import re
import sys
import textwrap
import time
import tokenize
from functools import cache
from pathlib import Path

import numpy as np
from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.tables")

ROOT = Path(__file__).resolve().parent.parent  # the checkout these docs belong to
MARKER = re.compile(r"^<!--\s*table:\s*(?P<body>[^>]*?)\s*-->[ \t]*$", re.MULTILINE)
KINDS = ("observation", "action", "params", "settings")
_MAX_VALUES = 5  # arrays up to this size show their values


def on_startup(command, dirty):  # noqa: ARG001 - MkDocs hook signature
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 - MkDocs hook signature
    def replace(match: re.Match) -> str:
        words = match.group("body").split()
        if len(words) < 2 or words[1] not in KINDS:
            raise PluginError(
                f"{page.file.src_uri}: table marker {match.group(0)!r}; expected "
                f"'<!-- table: ENV_ID {{{'|'.join(KINDS)}}} [key=value ...] [extra] -->'"
            )
        env_id, kind, rest = words[0], words[1], words[2:]
        extra = "extra" in rest
        settings = tuple(_parse_setting(w, page) for w in rest if w != "extra")
        try:
            return _TABLES[kind](env_id, settings, extra)
        except PluginError:
            raise
        except Exception as exc:  # an import or API error: fail the build, say where
            raise PluginError(
                f"{page.file.src_uri}: table {env_id} {kind}: {type(exc).__name__}: {exc}"
            ) from exc

    return MARKER.sub(replace, markdown)


def _parse_setting(word: str, page) -> tuple[str, object]:
    key, sep, value = word.partition("=")
    if not sep:
        raise PluginError(f"{page.file.src_uri}: table marker word {word!r}; expected key=value")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


@cache
def _env(env_id: str, settings: tuple = ()):
    import jaxlem  # the checkout's package (ROOT is first on sys.path)

    t0 = time.perf_counter()
    env = jaxlem.make(env_id, **dict(settings))
    _ = env.default_params
    dt = time.perf_counter() - t0
    what = " ".join([env_id, *(f"{k}={v!r}" for k, v in settings)])
    log.info(f"hooks: {what} built in {dt:.1f} s")
    return env


# ----------------------------------------------------------------------------- formatting
def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    s = " ".join(str(text).split())
    return s.replace("|", r"\|").replace("<", "&lt;").replace("*", r"\*")


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(x) -> str:
    v = np.asarray(x).item()
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _describe_value(value) -> tuple[str, str]:
    """(shape and dtype, default) of a params field's default value."""
    if value is None:
        return "None", "None"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arr = np.asarray(value)
        shape = f"`{arr.dtype}[{', '.join(str(d) for d in arr.shape)}]`"
        if arr.size == 0:
            return shape, "empty"
        if arr.ndim == 0:
            return shape, f"`{_num(arr)}`"
        if arr.size <= _MAX_VALUES:
            return shape, "`[" + ", ".join(_num(v) for v in arr.ravel()) + "]`"
        flat = arr.ravel()
        if np.all(flat == flat[0]) or (np.all(np.isnan(flat))):
            return shape, f"all `{_num(flat[0])}`"
        if np.issubdtype(arr.dtype, np.number) and np.all(np.isfinite(flat)):
            return shape, f"`{_num(flat.min())}` to `{_num(flat.max())}`"
        return shape, "varies"
    name = type(value).__name__
    extra = ""
    if hasattr(value, "num_buses"):  # a Network
        extra = f": {getattr(value, 'name', '')} ({value.num_buses} buses)".replace(" ()", "")
    return f"{name} pytree", f"{name}{extra}"


def _describe_setting(value) -> str:
    text = repr(value)
    if len(text) > 40:
        text = f"{type(value).__name__}(...)"
    return f"`{_cell(text)}`"


# ----------------------------------------------------------------------------- source comments
@cache
def _source_notes(cls: type) -> tuple[dict[str, str], dict[str, str]]:
    """From the class source (and its bases'): ``(field -> trailing comment, field -> title)``.

    A comment on lines of its own titles the fields that follow, up to a blank line or the
    next such comment."""
    comments: dict[str, str] = {}
    titles: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass.__module__ == "builtins":
            continue
        try:
            src = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        c, t = _notes_of(src)
        comments.update(c)
        titles.update(t)
    return comments, titles


_FIELD = re.compile(r"^[ \t]+(?P<name>[A-Za-z_]\w*)[ \t]*:")


def _notes_of(src: str) -> tuple[dict[str, str], dict[str, str]]:
    lines = src.splitlines()
    line_comment: dict[int, str] = {}
    in_string: set[int] = set()  # lines of a string that starts its line (docstrings)
    body_indent = None
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            line_comment[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type == tokenize.INDENT and body_indent is None:
            body_indent = len(tok.string)
        elif tok.type == tokenize.STRING:
            first = tok.start[0]
            starts_line = not lines[first - 1][: tok.start[1]].strip()
            in_string.update(range(first if starts_line else first + 1, tok.end[0] + 1))
    comments: dict[str, str] = {}
    titles: dict[str, str] = {}
    title: list[str] = []
    prev_comment = False
    for i, line in enumerate(lines, start=1):
        stripped = line.strip()
        is_comment = False
        if not stripped:
            title = []
        elif i not in in_string and len(line) - len(line.lstrip()) == body_indent:
            if stripped.startswith("#"):
                text = line_comment.get(i, stripped.lstrip("#").strip())
                title = [*title, text] if prev_comment else [text]
                is_comment = True
            elif (m := _FIELD.match(line)) is not None:
                name = m.group("name")
                if i in line_comment:
                    comments[name] = line_comment[i]
                if title:
                    titles[name] = " ".join(title)
        prev_comment = is_comment
    return comments, titles


def _groups(names: list[str], cls: type) -> list[tuple[str, list[tuple[str, str]]]]:
    """Consecutive fields sharing a title: ``[(title, [(field, description)])]``; a title over
    a single undescribed field becomes its description."""
    comments, titles = _source_notes(cls)
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    for name in names:
        title = titles.get(name, "")
        if groups and groups[-1][0] == title:
            groups[-1][1].append((name, comments.get(name, "")))
        else:
            groups.append((title, [(name, comments.get(name, ""))]))
    out = []
    for title, rows in groups:
        if title and len(rows) == 1 and not rows[0][1]:
            out.append(("", [(rows[0][0], title)]))
        else:
            out.append((title, rows))
    # merge neighbours left untitled by the step above
    merged: list[tuple[str, list[tuple[str, str]]]] = []
    for title, rows in out:
        if merged and not title and not merged[-1][0]:
            merged[-1][1].extend(rows)
        else:
            merged.append((title, rows))
    return merged


def _grouped_tables(groups, header, row_fn) -> str:
    parts = []
    for title, rows in groups:
        if title:
            parts.append(f"*{_cell(title)}*")
        parts.append(_table(header, [row_fn(name, doc) for name, doc in rows]))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- the tables
def _columns_table(columns, kinds: list[str] | None, start: int) -> str:
    header = (
        ("index", "name", "description")
        if kinds is None
        else ("index", "name", "kind", "description")
    )
    rows = []
    for i, col in enumerate(columns):
        if i < start:
            continue
        row = [str(i), f"`{_cell(col.name)}`"]
        if kinds is not None:
            row.append(kinds[i])
        row.append(_cell(col.doc) or "&nbsp;")
        rows.append(tuple(row))
    return _table(header, rows)


def observation_table(env_id: str, settings: tuple, extra: bool) -> str:
    env = _env(env_id, settings)
    cols = tuple(env.observation_columns())
    shape = tuple(env.observation_space().shape)
    start = len(_env(env_id, ()).observation_columns()) if extra else 0
    if len(cols) != shape[-1]:
        raise PluginError(
            f"{env_id}: observation_columns() has {len(cols)} columns, "
            f"observation_space() has {shape[-1]}"
        )
    note = f'Observation of `jaxlem.make("{env_id}"{_kwargs(settings)})`: shape `{shape}`.'
    return note + "\n\n" + _columns_table(cols, None, start)


def action_table(env_id: str, settings: tuple, extra: bool) -> str:
    env = _env(env_id, settings)
    cols = tuple(env.action_columns())
    layout = env.action_layout()
    if len(cols) != layout.act_dim:
        raise PluginError(
            f"{env_id}: action_columns() has {len(cols)} columns, "
            f"action_layout().act_dim is {layout.act_dim}"
        )
    kinds = [f"continuous in [{_num(layout.low)}, {_num(layout.high)}]"] * layout.continuous
    kinds += [f"categorical: {k} options, encoded as option index - 1" for k in layout.categorical]
    start = len(_env(env_id, ()).action_columns()) if extra else 0
    shape = tuple(env.action_space().shape)
    note = (
        f'Action of `jaxlem.make("{env_id}"{_kwargs(settings)})`: shape `{shape}`; '
        f"`action_layout()`: {layout.continuous} continuous column(s) in "
        f"[{_num(layout.low)}, {_num(layout.high)}]"
        + (
            f", categorical heads of {list(layout.categorical)} options."
            if layout.categorical
            else ", no categorical head."
        )
    )
    return note + "\n\n" + _columns_table(cols, kinds, start)


def params_table(env_id: str, settings: tuple, extra: bool) -> str:  # noqa: ARG001
    env = _env(env_id, settings)
    params = env.default_params
    cls = type(params)
    fields = dataclasses.fields(cls)
    static = {f.name for f in fields if not f.metadata.get("pytree_node", True)}

    def row(name: str, doc: str):
        shape, default = _describe_value(getattr(params, name))
        note = " (static)" if name in static else ""
        return (f"`{name}`", shape, default, (_cell(doc) or "&nbsp;") + note)

    groups = _groups([f.name for f in fields], cls)
    intro = (
        f"`{cls.__name__}` (`{cls.__module__}`): the default params of "
        f'`jaxlem.make("{env_id}"{_kwargs(settings)})`.'
    )
    return (
        intro
        + "\n\n"
        + _grouped_tables(groups, ("field", "shape and dtype", "default", "description"), row)
    )


def settings_table(env_id: str, settings: tuple, extra: bool) -> str:  # noqa: ARG001
    env = _env(env_id, settings)
    cls = type(env)
    fields = [f for f in dataclasses.fields(env) if f.init]
    types = {
        f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        for f in fields
    }

    def row(name: str, doc: str):
        return (
            f"`{name}`",
            f"`{_cell(types[name])}`",
            _describe_setting(getattr(env, name)),
            _cell(doc) or "&nbsp;",
        )

    groups = _groups([f.name for f in fields], cls)
    intro = (
        f"`{cls.__name__}` (`{cls.__module__}`): static settings, keyword arguments of "
        f'`jaxlem.make("{env_id}", ...)`; each value shown is the default.'
    )
    return (
        intro + "\n\n" + _grouped_tables(groups, ("setting", "type", "default", "description"), row)
    )


def _kwargs(settings: tuple) -> str:
    return "".join(f", {k}={v!r}" for k, v in settings)


_TABLES = {
    "observation": observation_table,
    "action": action_table,
    "params": params_table,
    "settings": settings_table,
}
