"""Regenerate the README's settings table from streams.settings (run after adding a setting)."""

import re
from pathlib import Path

from streams.settings import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"
text = README.read_text()
text = re.sub(
    r"(<!-- settings-table:start -->\n).*?(<!-- settings-table:end -->)",
    lambda match: match.group(1) + settings_table() + "\n" + match.group(2),
    text,
    flags=re.S,
)
README.write_text(text)
print("README settings table updated")
