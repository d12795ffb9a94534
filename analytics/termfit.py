"""Tables that fit the width they get: the layout engine of ``kwatt report`` and ``kwatt top``.

A table is described once, as :class:`Column` s (header, abbreviated header, importance rank,
justification, whether text may fold) and rows of cells. :func:`plan` then decides, for a width in
terminal cells, what is drawn:

* Everything fits with full headers: one table, as described.
* Otherwise the abbreviated headers are used, and the non-key columns are taken in order of
  importance (rank, then position). In ``stack`` mode (the report, a document: nothing may be
  lost) every column that still fits joins the first table; the columns left over go to a
  continuation table stacked under it, which repeats the key columns (rank 0; long foldable keys
  fold to keep them under :data:`KEY_SHARE` of the width), and so on until every column is drawn. In
  ``drop`` mode (``kwatt top``, a screen) columns are taken until the next does not fit, the rest
  hidden and named in :attr:`Layout.hidden`, which the face prints as a footer line. Either way the order in which columns leave is the documented
  rank order, never rich's squeezing.
* Key columns too wide even for one more column: key columns allowed to fold (``fold_min``, text
  only) are narrowed down to that width; still too wide, :func:`plan` returns ``None`` and the face
  draws :func:`records`, a vertical "label value" block per row. So does a table that would need
  more than :data:`MAX_PARTS` stacked parts.

Every column is drawn with its exact width, ``no_wrap`` and ``overflow="fold"``, so rich never cuts
a cell with "…": a number is either shown whole or its column is not shown.
``width=None`` means unlimited (output that is not a terminal): every column at its full width.

Widths: with the styles here a table is ``sum(column widths) + SEP × (columns - 1)`` cells wide
(rich's own measurement agrees; tests/live/test_faces.py checks every line of every golden render).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

__all__ = [
    "SEP_BOXED",
    "SEP_PLAIN",
    "Cell",
    "Column",
    "Layout",
    "fitted",
    "plan",
    "records",
    "table",
]

#: Cells between two columns: ``box.SIMPLE_HEAD`` without edges (the report) and no box (top).
SEP_BOXED = 3
SEP_PLAIN = 2

Cell = str | Text

#: A table that would need more stacked parts than this is drawn as records instead.
MAX_PARTS = 4
#: In stacked (report) layouts, foldable key columns are folded so that the keys take at most
#: this share of the width (long device ids would otherwise leave room for one column per part).
KEY_SHARE = 0.45


@dataclass(frozen=True, slots=True)
class Column:
    """One column: ``rank`` 0 is a key column (in every stacked part, never dropped); higher ranks
    are less important and leave first when the width is short."""

    header: str
    short: str = ""
    rank: int = 1
    justify: Literal["left", "right"] = "right"
    #: text that may fold onto more lines, down to this many cells (never set for numbers)
    fold_min: int | None = None
    #: no header of its own (a bar drawn next to its figure)
    headless: bool = False

    def head(self, short: bool) -> str:
        if self.headless:
            return ""
        return (self.short or self.header) if short else self.header


@dataclass(frozen=True, slots=True)
class Layout:
    """What :func:`plan` decided: column indices and widths per stacked part, which headers, and
    (drop mode) the columns not shown."""

    parts: tuple[tuple[int, ...], ...]
    widths: tuple[tuple[int, ...], ...]
    short_headers: bool
    hidden: tuple[int, ...] = ()

    def width_of(self, part: int, sep: int) -> int:
        w = self.widths[part]
        return sum(w) + sep * (len(w) - 1) if w else 0


def _text(c: Cell) -> Text:
    """A cell as :class:`Text`: a ``str`` is shown as it is, never parsed as rich markup."""
    return c if isinstance(c, Text) else Text(c)


def _len(c: Cell) -> int:
    return c.cell_len if isinstance(c, Text) else cell_len(c)


def _natural(cols: Sequence[Column], rows: Sequence[Sequence[Cell]], short: bool) -> list[int]:
    widths = [cell_len(c.head(short)) for c in cols]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], _len(cell))
    return widths


def _fit_keys(
    cols: Sequence[Column], keys: list[int], widths: list[int], room: int
) -> list[int] | None:
    """Key widths narrowed (foldable text only, widest first) to total at most ``room``."""
    out = {i: widths[i] for i in keys}
    excess = sum(out.values()) - room
    for i in sorted(keys, key=lambda i: -widths[i]):
        if excess <= 0:
            break
        floor = cols[i].fold_min
        if floor is None:
            continue
        cut = min(excess, max(out[i] - floor, 0))
        out[i] -= cut
        excess -= cut
    return [out[i] for i in keys] if excess <= 0 else None


def _floors(cols: Sequence[Column], keys: list[int], widths: list[int]) -> list[int]:
    """Key widths with every foldable key column at its fold width."""
    return [min(widths[i], cols[i].fold_min or widths[i]) for i in keys]


def _parts(
    cols: Sequence[Column], widths: list[int], width: int, sep: int, stack: bool
) -> Layout | None:
    keys = [i for i, c in enumerate(cols) if c.rank == 0]
    rest = sorted((i for i, c in enumerate(cols) if c.rank != 0), key=lambda i: (cols[i].rank, i))
    parts: list[tuple[int, ...]] = []
    part_widths: list[tuple[int, ...]] = []
    while True:
        key_w = [widths[i] for i in keys]
        used = sum(key_w) + sep * max(len(keys) - 1, 0)
        chosen: list[int] = []
        if stack and keys and sum(key_w) > KEY_SHARE * width:
            key_w = _fit_keys(cols, keys, widths, int(KEY_SHARE * width)) or _floors(
                cols, keys, widths
            )
            used = sum(key_w) + sep * max(len(keys) - 1, 0)
        for i in rest:
            need = widths[i] + (sep if keys or chosen else 0)
            if used + need > width:
                if stack:
                    continue  # a later (less important) column may still fit this part
                break
            chosen.append(i)
            used += need
        over: dict[int, int] = {}
        if rest and not chosen:
            # the next column alone does not fit: fold it (text) into the room left, else narrow
            # the foldable key columns
            nxt = rest[0]
            room = width - used - (sep if keys else 0)
            floor = cols[nxt].fold_min
            if floor is not None and room >= floor:
                over[nxt] = room
            else:
                col_w = widths[nxt] if floor is None else floor
                narrowed = _fit_keys(cols, keys, widths, width - col_w - sep * len(keys))
                if not keys or narrowed is None:
                    return None
                key_w = narrowed
                over[nxt] = col_w
            chosen = [nxt]
        if not rest and not parts and used > width:
            narrowed = _fit_keys(cols, keys, widths, width - sep * max(len(keys) - 1, 0))
            if narrowed is None:
                return None
            key_w = narrowed
        shown = sorted(keys + chosen)
        wmap = dict(zip(keys, key_w, strict=True)) | {i: over.get(i, widths[i]) for i in chosen}
        parts.append(tuple(shown))
        part_widths.append(tuple(wmap[i] for i in shown))
        rest = [i for i in rest if i not in chosen]
        if not rest or not stack:
            return Layout(tuple(parts), tuple(part_widths), False, tuple(sorted(rest)))


def plan(
    cols: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    width: int | None,
    *,
    sep: int,
    stack: bool,
) -> Layout | None:
    """Lay ``rows`` out in ``width`` cells (``None``: unlimited); ``None`` when even the key
    columns cannot be drawn (then use :func:`records`)."""
    full = _natural(cols, rows, short=False)
    if width is None or sum(full) + sep * (len(cols) - 1) <= width:
        return Layout((tuple(range(len(cols))),), (tuple(full),), False)
    short = _natural(cols, rows, short=True)
    layout = _parts(cols, short, width, sep, stack)
    if layout is None or len(layout.parts) > MAX_PARTS:
        return None
    return Layout(layout.parts, layout.widths, True, layout.hidden)


def table(
    cols: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    layout: Layout,
    part: int = 0,
    *,
    boxed: bool,
    title: str | None = None,
    row_styles: Sequence[str | None] | None = None,
) -> Table:
    """The rich table of one part of ``layout``: exact widths, nothing cut."""
    t = Table(
        box=box.SIMPLE_HEAD if boxed else None,
        show_edge=False,
        pad_edge=False,
        expand=False,
        title=title,
        header_style="bold",
    )
    for i, w in zip(layout.parts[part], layout.widths[part], strict=True):
        c = cols[i]
        t.add_column(
            c.head(layout.short_headers),
            justify=c.justify,
            width=w,
            min_width=w,
            no_wrap=c.fold_min is None,
            overflow="fold",
        )
    for k, row in enumerate(rows):
        style = row_styles[k] if row_styles is not None else None
        t.add_row(*(_text(row[i]) for i in layout.parts[part]), style=style)
    return t


def records(
    cols: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    title: str | None = None,
) -> list[RenderableType]:
    """Each row as a vertical block: the key cells on one line, then one ``label value`` line per
    other column (the layout for widths too narrow for any table)."""
    keys = [i for i, c in enumerate(cols) if c.rank == 0]
    label_w = max((cell_len(c.short or c.header) for c in cols), default=0)
    out: list[RenderableType] = []
    if title:
        out.append(Text(title, style="bold"))
    for row in rows:
        head = Text(" · ").join(_text(row[i]) for i in keys)
        head.stylize("bold")
        out.append(head)
        for i, c in enumerate(cols):
            if i in keys or c.headless:
                continue
            cell = row[i]
            line = Text(f"  {(c.short or c.header).ljust(label_w)}  ", style="dim")
            line.append_text(_text(cell))
            line.overflow = "fold"
            out.append(line)
    return out


def fitted(
    cols: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    width: int | None,
    *,
    title: str | None = None,
    row_styles: Sequence[str | None] | None = None,
) -> list[RenderableType]:
    """A report table in ``width`` cells: one table, stacked parts (the key columns repeated), or
    records; nothing is left out."""
    layout = plan(cols, rows, width, sep=SEP_BOXED, stack=True)
    if layout is None:
        return records(cols, rows, title=title)
    out: list[RenderableType] = []
    n = len(layout.parts)
    for p in range(n):
        if title is not None:
            out.append(Text(title + (f" ({p + 1}/{n})" if n > 1 else ""), style="bold"))
        out.append(table(cols, rows, layout, p, boxed=True, row_styles=row_styles))
    return out
