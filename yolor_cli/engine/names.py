"""Class names as they may be written to a one-name-per-line file.

``classes.names`` (and every ``--names`` file) holds one class per line, so a name that spans lines
would add a class and shift every label after it. One rule for every source of names:

* whitespace is layout, not part of a name: it is stripped from both ends and any run inside
  (a line break or tab from a pretty-printed XML file, ``"traffic\\n    light"``) becomes one space.
  Refusing those would stop a whole dataset over its indentation, and no one means a class whose
  name differs from another's by a line break;
* any other control character cannot be shown or typed back, so such a name is refused (naming
  the file it came from), as is a name that is empty once stripped.
"""

from __future__ import annotations

import unicodedata


def normalise_class_name(raw: str) -> str:
    """``raw`` with its whitespace normalised (see the module); raises ValueError, saying why, for a
    name that is empty or holds a control character."""
    name = " ".join(raw.split())  # str.split() also splits at every character splitlines() breaks on
    if not name:
        raise ValueError("an empty class name")
    bad = next((char for char in name if unicodedata.category(char) == "Cc"), None)
    if bad is not None:
        raise ValueError(f"the class name {name!r} holds the control character {bad!r}")
    return name
