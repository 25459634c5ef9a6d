"""Output that survives a pipe: logs keep every path on one line; terminals keep Rich's layout."""

from __future__ import annotations

import io
import sys

import pytest

from yolor_cli.console import RichReporter, markup, print_error, print_notes, stderr_console, stdout_console

LONG_PATH = "/data/voc/JPEGImages/" + "very_long_image_name_" * 8 + "end.jpg"


class FakeTerminal(io.StringIO):
    """A captured stream that says it is a terminal, as a real one would."""

    def isatty(self) -> bool:
        return True


def _pipes(monkeypatch: pytest.MonkeyPatch) -> tuple[io.StringIO, io.StringIO]:
    """Non-terminal stdout and stderr, 60 columns asked for, no colour forced. Called in the test
    itself: pytest puts its own capture back on sys.stdout/stderr after fixtures have run."""
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setenv("COLUMNS", "60")
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    return out, err


def _line_with(text: str, output: str) -> str:
    lines = [line for line in output.splitlines() if text in line]
    assert len(lines) == 1, output
    return lines[0]


def test_a_pipe_gets_every_path_on_one_line_and_no_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _pipes(monkeypatch)
    reporter = RichReporter()
    reporter.table("Skipped", ["file", "reason"], [[LONG_PATH, "corrupt image (truncated)"]])
    reporter.warning(f"cannot read {LONG_PATH}")
    reporter.info(f"Reading {LONG_PATH}")
    print_error(f"image not found: {LONG_PATH}", hint=f"check {LONG_PATH}")
    print_notes([f"kept the previous version as {LONG_PATH}.bak"])
    stdout_console().print(markup("Wrote [b]{}[/]", LONG_PATH))
    rows = [line for line in err.getvalue().splitlines() if "│" in line and LONG_PATH in line]
    assert len(rows) == 1 and "corrupt image (truncated)" in rows[0]
    for expected in (
        f"Warning: cannot read {LONG_PATH}",
        f"Reading {LONG_PATH}",
        f"Error: image not found: {LONG_PATH}",
        f"Hint: check {LONG_PATH}",
        f"Note: kept the previous version as {LONG_PATH}.bak",
    ):
        assert _line_with(expected, err.getvalue()) == expected
    assert _line_with(LONG_PATH, out.getvalue()) == f"Wrote {LONG_PATH}"
    assert "…" not in err.getvalue() + out.getvalue()
    # Tables are as wide as their content, and text is not padded to the (unbounded) width.
    assert max(len(line) for line in (err.getvalue() + out.getvalue()).splitlines()) < len(LONG_PATH) + 40


def test_forced_colour_on_a_pipe_still_keeps_lines_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI often sets FORCE_COLOR; Rich then treats the pipe as a terminal, but its width must not fold."""
    _, err = _pipes(monkeypatch)
    monkeypatch.setenv("FORCE_COLOR", "1")
    print_error(f"image not found: {LONG_PATH}")
    assert LONG_PATH in err.getvalue() and "\x1b[" in err.getvalue()


def test_a_terminal_keeps_its_width(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("COLUMNS", "60")
    assert stderr_console().width == 60
    print_error(f"image not found: {LONG_PATH}")
    assert LONG_PATH not in terminal.getvalue()  # folded at 60 columns, as on screen
    assert all(len(line) <= 60 for line in terminal.getvalue().splitlines())


@pytest.mark.parametrize("terminal", [True, False])
def test_no_color_is_respected(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    stream = FakeTerminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("FORCE_COLOR", "1")
    print_error("bad input")
    assert "\x1b[1;31m" in stream.getvalue()  # bold red, so the check below means something
    stream.seek(0)
    stream.truncate()
    monkeypatch.setenv("NO_COLOR", "1")
    print_error("bad input")
    assert "31m" not in stream.getvalue() and "bad input" in stream.getvalue()


HOSTILE = ["[/b]", "[bold]x", ":smile:", "[red]a[/red] \\", "[link=file:///etc]y[/link]"]


@pytest.mark.parametrize("text", HOSTILE)
def test_data_is_printed_verbatim_never_as_markup_or_emoji(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """A class or file name is data: every way this package prints shows it as it is (issue 20 #4)."""
    out, err = _pipes(monkeypatch)
    reporter = RichReporter()
    reporter.info(f"info {text}")
    reporter.warning(f"warn {text}")
    reporter.table(f"title {text}", [f"head {text}"], [[f"cell {text}"]])
    for _ in reporter.track([1], f"desc {text}"):
        pass
    for _ in reporter.track([1], f"epoch {text}", fields=["loss"]):
        reporter.update({"loss": f"field {text}"})
    print_error(f"error {text}", hint=f"hint {text}")
    print_notes([f"note {text}"])
    stdout_console().print(f"plain {text}")
    stdout_console().print(markup("[b]Wrote[/] {} and {}", f"value {text}", text))
    written = err.getvalue() + out.getvalue()
    for expected in (
        f"info {text}",
        f"Warning: warn {text}",
        f"title {text}",
        f"head {text}",
        f"cell {text}",
        f"epoch {text} field {text}",
        f"Error: error {text}",
        f"Hint: hint {text}",
        f"Note: note {text}",
        f"plain {text}",
        f"Wrote value {text} and {text}",
    ):
        assert expected in written, (expected, written)
    assert "😄" not in written


def test_markup_styles_only_its_template() -> None:
    styled = markup("[b]Wrote[/] {}", "[red]x[/red]")
    assert styled.plain == "Wrote [red]x[/red]"
    assert [(span.start, span.end, span.style) for span in styled.spans] == [(0, 5, "bold")]


def test_markup_keeps_the_styles_around_a_value_and_repeats_fields() -> None:
    styled = markup("{0} [red]{1}[/] {0}", "a\\", "[b]")
    assert styled.plain == "a\\ [b] a\\"
    assert [(span.start, span.end, str(span.style)) for span in styled.spans] == [(3, 6, "red")]
