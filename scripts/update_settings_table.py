"""Regenerate the settings table in docs/settings.md from phaseflow.streams.core.settings (run after
adding a setting); tests/unit/test_docs_match_code.py fails while the table is stale."""

import re
import sys
from pathlib import Path

from phaseflow.streams.core.settings import settings_table

SETTINGS_DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
MARKERS = re.compile(r"(<!-- settings-table:start -->\n).*?(<!-- settings-table:end -->)", re.S)

text = SETTINGS_DOC.read_text()
if not MARKERS.search(text):
    sys.exit(f"{SETTINGS_DOC}: settings-table markers not found; nothing was updated")
SETTINGS_DOC.write_text(
    MARKERS.sub(lambda match: match.group(1) + settings_table() + "\n" + match.group(2), text)
)
print(f"{SETTINGS_DOC.relative_to(SETTINGS_DOC.parents[1])}: settings table updated")
