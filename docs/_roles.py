"""A griffe extension for the API reference: reactor's docstrings, written with Sphinx
roles and literal blocks, read as Markdown.

* ``:func:`~reactor.abc.Source``` (any role) becomes the code span ``Source``; with an
  explicit title (``:meth:`text <target>```) the title;
* a paragraph ending in ``::`` introduces a fenced Python block of the indented lines
  that follow it;
* a link ```text <https://...>`_`` becomes ``[text](https://...)``;
* a simple table (columns drawn with ``===``) becomes a Markdown table, and a
  definition list whose terms are literals (````name````, its definition indented
  below) a Markdown one;
* an attribute without a docstring takes the ``#:`` comment above it, as Sphinx does.

The Sphinx fields (``:param:``, ``:raises:``, ``:return:``) are left to mkdocstrings'
``sphinx`` docstring style.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":[a-z]+:`(~?)([^`<]*?)(?:\s*<([^>`]+)>)?`")
_PAGE = re.compile(
    r"``docs/([\w/-]+\.md)``(?: in the repository\s+\(``mkdocs serve`` to read the site\))?"
)
_LINK = re.compile(r"`([^`<]+?)\s*<(https?://[^>]+)>`_{1,2}")


def _role(match: re.Match[str]) -> str:
    tilde, text, target = match.groups()
    if target:  # :role:`title <target>`
        return f"`{text.strip()}`"
    if tilde:
        text = text.rsplit(".", 1)[-1]
    return f"`{text}`"


def _literal_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            head = line.rstrip()[:-2].rstrip()
            indent = len(line) - len(line.lstrip())
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block: list[str] = []
            while j < len(lines) and (
                not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
            ):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                if head.strip():
                    # Sphinx: "text::" reads "text:", and "text ::" reads "text".
                    spaced = line.rstrip()[:-2].endswith(" ")
                    out.append(head if spaced else head + ":")
                    out.append("")
                pad = " " * indent
                body = textwrap.dedent("\n".join(block)).split("\n")
                out.append(pad + "```python")
                out.extend(pad + b if b else "" for b in body)
                out.append(pad + "```")
                out.append("")
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


_BORDER = re.compile(r"^( *)=+( +=+)+ *$")
_TERM = re.compile(r"^( *)``[^`]+`` *$")


def _table(lines: list[str]) -> list[str]:
    """Rewrite a simple table (border, header, border, rows, border) as Markdown.

    A line whose first column is empty continues the row above, as does every line
    while the first cell holds an unclosed literal (a name broken across lines).
    """
    border = lines[0]
    spans = [m.span() for m in re.finditer(r"=+", border)]
    starts = [start for start, _ in spans]

    def cells(line: str) -> list[str]:
        bounds = [*starts[1:], None]
        return [line[start:end].strip() for start, end in zip(starts, bounds, strict=True)]

    header = cells(lines[1])
    rows: list[list[str]] = []
    for line in lines[3:-1]:
        if not line.strip():
            continue
        row = cells(line)
        if rows and (not row[0] or rows[-1][0].count("``") % 2):
            previous = rows[-1]
            for k, cell in enumerate(row):
                if not cell:
                    continue
                glue = "" if previous[k].count("``") % 2 else " "
                previous[k] = f"{previous[k]}{glue}{cell}".strip()
            continue
        rows.append(row)
    pad = border[: len(border) - len(border.lstrip())]
    out = [pad + "| " + " | ".join(header) + " |", pad + "|" + "---|" * len(header)]
    out.extend(pad + "| " + " | ".join(row) + " |" for row in rows)
    return out


def _tables_and_terms(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        # A table: border, header, border, rows..., border.
        if _BORDER.match(line) and i + 2 < len(lines) and lines[i + 2] == line:
            end = next((j for j in range(i + 3, len(lines)) if lines[j] == line), None)
            if end is not None:
                out.extend(_table(lines[i : end + 1]))
                i = end + 1
                continue
        # A definition list's term: a literal alone on its line, after a blank line,
        # its definition indented below it.
        term = _TERM.match(line)
        if term and (not out or not out[-1].strip()) and i + 1 < len(lines):
            indent = len(term.group(1))
            below = lines[i + 1]
            if below.strip() and len(below) - len(below.lstrip()) > indent:
                out.append(line)
                j = i + 1
                definition: list[str] = []
                while j < len(lines) and lines[j].strip():
                    definition.append(lines[j].strip())
                    j += 1
                out.append(" " * indent + ":   " + " ".join(definition))
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _page_links(text: str) -> str:
    """Make a module's pointer to its manual, ``docs/<page>.md``, a link to that page.

    The modules that point to a page are those of ``reactor.sources`` and
    ``reactor.queues``, whose reference pages are ``reference/<family>/<module>.md``.
    """
    return _PAGE.sub(lambda m: f"[docs/{m.group(1)}](../../{m.group(1)})", text)


def markdown(text: str) -> str:
    """Rewrite one docstring's Sphinx markup as Markdown.

    :param text: the docstring.
    :return: the same docstring, in Markdown.
    """
    text = _LINK.sub(lambda m: f"[{m.group(1)}]({m.group(2)})", text)
    text = _ROLE.sub(_role, text)
    return _literal_blocks(_tables_and_terms(text))


class SphinxMarkup(griffe.Extension):
    """Rewrites every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite *obj*'s docstring.

        :param obj: a module, class, function or attribute griffe loaded.
        :param kwargs: the other arguments of the hook.
        """
        if obj.docstring is not None:
            text = _page_links(obj.docstring.value) if obj.is_module else obj.docstring.value
            obj.docstring.value = markdown(text)

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        """Give *attr* the ``#:`` comment above it as its docstring, if it has none.

        :param attr: a module or class attribute griffe loaded.
        :param kwargs: the other arguments of the hook.
        """
        if attr.docstring is not None or attr.lineno is None or attr.filepath is None:
            return
        try:
            lines = attr.lines_collection[attr.filepath]
        except KeyError:
            return
        comment: list[str] = []
        index = attr.lineno - 2  # the line above the assignment, counted from 0
        while index >= 0 and lines[index].lstrip().startswith("#:"):
            comment.insert(0, lines[index].lstrip()[2:].strip())
            index -= 1
        if comment:
            attr.docstring = griffe.Docstring(
                markdown(" ".join(comment)), lineno=index + 2, parent=attr
            )
