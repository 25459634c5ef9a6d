"""One self-contained HTML page per run (``yolor report``): what kind of run a folder holds, its data
gathered into sections, rendered through the Jinja2 templates shipped beside this package."""
