"""A table that draws only the rows on screen (Textual's Line API), for fleets of hundreds
of GPUs: DataTable re-renders every visible cell through Rich after any change (~200 ms
for a 64-host x 8-GPU fleet here); this draws a row as one strip of plain segments."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = str | Text


class LazyCells:
    """A row's cells, built the first time the row is drawn: a 64-host x 8-GPU fleet has
    ~600 rows and a screen shows ~45, so most rows of a refresh are never built."""

    __slots__ = ("_build", "_cells")

    def __init__(self, build: Callable[[], list[Cell]]) -> None:
        self._build: Callable[[], list[Cell]] | None = build
        self._cells: list[Cell] = []

    def get(self) -> list[Cell]:
        if self._build is not None:
            self._cells, self._build = self._build(), None
        return self._cells


Row = tuple[str, "list[Cell] | LazyCells"]
HEADER = Style(bold=True)
CURSOR = Style(reverse=True)
GAP = 1  # blank columns between cells


class FleetTable(ScrollView, can_focus=True):
    BINDINGS: ClassVar = [
        Binding("up", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "first", show=False),
        Binding("end", "last", show=False),
    ]

    class HeaderSelected(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: list[tuple[str, str, int]] = []
        self.rows: list[Row] = []
        self.index: dict[str, int] = {}
        self.cursor_row = 0

    # -- data ---------------------------------------------------------------------------------
    def set_columns(self, columns: list[tuple[str, str, int]]) -> None:
        self.columns = list(columns)
        self._resize()

    def set_rows(self, rows: list[Row]) -> None:
        self.rows = rows
        self.index = {key: i for i, (key, _) in enumerate(rows)}
        self.cursor_row = min(self.cursor_row, max(len(rows) - 1, 0))
        self._resize()
        self.refresh()

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def get_row(self, key: str) -> list[Cell]:
        return self._cells(self.index[key])

    def _cells(self, index: int) -> list[Cell]:
        cells = self.rows[index][1]
        return cells.get() if isinstance(cells, LazyCells) else cells

    def _resize(self) -> None:
        width = sum(w + GAP for _, _, w in self.columns)
        self.virtual_size = Size(width, len(self.rows) + 1)  # + the header line

    # -- drawing --------------------------------------------------------------------------------
    def _cell(self, value: Cell, width: int, base: Style) -> Segment:
        text, style = str(value), base
        if isinstance(value, Text):
            text = value.plain
            if value.style:
                style = base + Style.parse(str(value.style))
        text = text[:width].ljust(width + GAP)
        return Segment(text, style)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            segments = [self._cell(label, w, HEADER) for _, label, w in self.columns]
        else:
            index = scroll_y + y - 1
            if index >= len(self.rows):
                return Strip.blank(width)
            base = CURSOR if index == self.cursor_row and self.has_focus else Style()
            if index == self.cursor_row and not self.has_focus:
                base = Style(underline=True)
            cells = self._cells(index)
            segments = [
                self._cell(v, w, base) for v, (_, _, w) in zip(cells, self.columns, strict=False)
            ]
        return Strip(segments).crop(scroll_x, scroll_x + width).extend_cell_length(width)

    # -- moving -----------------------------------------------------------------------------------
    def _show_cursor(self) -> None:
        visible = max(self.size.height - 1, 1)
        top = self.scroll_offset.y
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)
        self.refresh()

    def move_cursor(self, row: int) -> None:
        self.cursor_row = max(0, min(row, len(self.rows) - 1))
        self._show_cursor()

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(self.size.height - 2, 1))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self.rows) - 1)

    def on_click(self, event: Click) -> None:
        if event.y == 0:
            x = event.x + self.scroll_offset.x
            for key, _, w in self.columns:
                if x < w + GAP:
                    self.post_message(self.HeaderSelected(key))
                    return
                x -= w + GAP
            return
        self.move_cursor(self.scroll_offset.y + event.y - 1)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
