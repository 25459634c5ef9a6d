"""Darknet ``.cfg`` text: parsing into sections and writing back.

This module knows only the file format (sections of ``key=value`` lines); what the keys mean
lives in :mod:`yolor_cli.engine.model.darknet.specs`. Values are kept as the strings written in the
file so that a parse followed by a write changes nothing but layout and comments.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from yolor_cli.engine.errors import CfgError
from yolor_cli.engine.files import check_regular_file

NET_SECTION_NAMES = ("net", "network")
COMMENT_PREFIXES = ("#", ";")


@dataclass
class Section:
    """One ``[type]`` block: its raw options in file order and where it was written."""

    type: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = field(default=0, compare=False)
    option_lines: dict[str, int] = field(default_factory=dict, compare=False)

    def where(self, source: str, key: str | None = None) -> str:
        """``file:line`` of the section, or of one of its keys, for error messages."""
        line = self.option_lines.get(key, self.line) if key else self.line
        return f"{source}:{line}"


@dataclass
class DarknetCfg:
    """A parsed cfg: the ``[net]`` section and one section per model layer."""

    net: Section
    layers: list[Section]
    source: str = field(default="<cfg>", compare=False)

    def copy(self) -> DarknetCfg:
        return copy.deepcopy(self)


def _strip_comment(line: str) -> str:
    for prefix in COMMENT_PREFIXES:
        position = line.find(prefix)
        if position != -1:
            line = line[:position]
    return line.strip()


def parse_cfg(text: str, source: str = "<cfg>") -> DarknetCfg:
    """Parse cfg text; errors name ``source`` and the line."""
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(
                    f"{source}:{number}: malformed section header {raw.strip()!r}",
                    hint="section headers look like [convolutional]",
                )
            sections.append(Section(type=line[1:-1].strip(), line=number))
            continue
        if not sections:
            raise CfgError(f"{source}:{number}: option {raw.strip()!r} appears before any [section]")
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise CfgError(f"{source}:{number}: expected key=value, got {raw.strip()!r}")
        section = sections[-1]
        if key in section.options:
            first = section.option_lines[key]
            raise CfgError(
                f"{source}:{number}: duplicate key {key!r} in [{section.type}] (first set on line {first})",
                hint="delete one of the two lines",
            )
        section.options[key] = value
        section.option_lines[key] = number
    if not sections:
        raise CfgError(f"{source}: no sections found; is this a Darknet .cfg file?")
    if sections[0].type not in NET_SECTION_NAMES:
        raise CfgError(
            f"{sections[0].where(source)}: the first section must be [net], found [{sections[0].type}]",
            hint="Darknet cfgs start with a [net] section holding input settings",
        )
    return DarknetCfg(net=sections[0], layers=sections[1:], source=source)


def read_cfg(path: str | Path) -> DarknetCfg:
    path = Path(path)
    check_regular_file(path, "cfg file")  # a FIFO would block the read forever
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CfgError(
            f"cfg file not found: {path}", hint="pass a path to a .cfg file or a bundled name such as yolor_csp"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CfgError(f"cannot read cfg file {path}: {exc}") from None
    return parse_cfg(text, source=str(path))


def write_cfg(cfg: DarknetCfg, header: str | None = None) -> str:
    """Cfg text in the official layout; comments in the source are not kept."""
    lines: list[str] = []
    if header:
        lines.extend(f"# {row}".rstrip() for row in header.splitlines())
        lines.append("")
    for index, section in enumerate([cfg.net, *cfg.layers]):
        if index > 0:
            lines.append(f"# {index - 1}")
        lines.append(f"[{section.type}]")
        lines.extend(f"{key}={value}" for key, value in section.options.items())
        lines.append("")
    return "\n".join(lines)
