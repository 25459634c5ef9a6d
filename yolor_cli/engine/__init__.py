"""The engine: everything that does the work, with no Typer, Rich, print or sys.exit.

Errors a user can cause are raised as :class:`yolor_cli.engine.errors.YolorError` subclasses;
the command-line layer decides how to show them.
"""
