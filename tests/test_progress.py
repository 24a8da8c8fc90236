"""zoo.progress: a tqdm bar on a terminal, plain lines in a log."""
import io

from zoo.progress import progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_piped_output_is_plain_lines():
    out = io.StringIO()
    items = list(progress(range(100), desc="rows", unit="rows", file=out, describe=lambda i: f"row {i}"))
    assert items == list(range(100))
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and 1 < len(lines) <= 21
    assert lines[-1].startswith("rows: 100/100 rows") and lines[-1].endswith("row 99")


def test_terminal_gets_a_bar_and_disable_is_silent():
    out = _Tty()
    assert list(progress(iter(range(5)), total=5, desc="x", file=out)) == list(range(5))
    assert "\r" in out.getvalue() and "5/5" in out.getvalue()      # tqdm redraws in place
    quiet = io.StringIO()
    assert list(progress([1, 2], file=quiet, disable=True)) == [1, 2] and quiet.getvalue() == ""
