"""A :class:`~yolor_cli.engine.report.page.Page` as one HTML file, through the Jinja2 templates shipped
in ``templates/`` (autoescaped: class names, paths and options are data, never markup)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from yolor_cli import __version__
from yolor_cli.engine.errors import MissingDependencyError
from yolor_cli.engine.report.page import Page

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"
# Written in the page's head; how an existing report.html is known to be ours (rewritten without --overwrite).
GENERATOR = "yolor-cli report"


def render(page: Page) -> str:
    try:
        import jinja2
    except ImportError:
        raise MissingDependencyError(
            "yolor report needs Jinja2, which is not installed", hint="pip install 'yolor-cli[report]'"
        ) from None
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the tests, not silently blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE).render(
        page=page,
        generator=GENERATOR,
        version=__version__,
        written=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
