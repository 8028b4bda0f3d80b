"""``--json``: a command's result as one JSON document on stdout, for scripts and CI.

Errors are not part of it: they stay one line on stderr with the usual exit code, so a script
that gets exit 0 can parse stdout and nothing else.
"""

from __future__ import annotations

from typing import Any, TextIO

import orjson


def write_json(out: TextIO, document: Any) -> None:
    """Write ``document`` (dicts, lists, dates and datetimes as ISO 8601) and a newline."""
    out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n")
