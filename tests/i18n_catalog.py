"""`make translations`: collect every marked string (Python `_()`/`N_()`/`ngettext()`, the templates'
`_()`/`ngettext()`, the scripts' `_("...")`), bring the German catalogue up to date (new strings appear
with an empty translation, gone ones are dropped) and compile it to the .mo the appliance reads.

    python -m tests.i18n_catalog            # update appliance/locale/de/LC_MESSAGES/ampgate.po and .mo

Babel does the extracting and compiling; it is a developer's and the tests' tool only (setup.py TEST).
tests/test_i18n.py uses `extract()` to fail when a string lacks its German translation.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "appliance" / "locale" / "de" / "LC_MESSAGES" / "ampgate.po"
MO = PO.with_suffix(".mo")
METHODS = [
    ("appliance/**.py", "python"),
    ("web/templates/**.html", "jinja2.ext:babel_extract"),
    ("web/static/**.js", "javascript"),
]
OPTIONS = {"web/templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extract() -> Catalog:
    """Every marked string of the code, templates and scripts, with where it is used."""
    cat = Catalog(project="ampgate", domain="ampgate")
    for filename, lineno, message, comments, context in extract_from_dir(
            str(ROOT), METHODS, OPTIONS, KEYWORDS, comment_tags=("TRANSLATORS:",), strip_comment_tags=True):
        cat.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return cat


def read() -> Catalog:
    with PO.open("rb") as f:
        return read_po(f, locale="de", domain="ampgate")


def compiled(cat: Catalog) -> bytes:
    out = io.BytesIO()
    write_mo(out, cat, use_fuzzy=False)
    return out.getvalue()


def update() -> tuple[int, int]:
    """Merge the extracted strings into the .po and compile it; returns (strings, untranslated)."""
    template = extract()
    cat = read() if PO.exists() else Catalog(locale="de", project="ampgate", domain="ampgate")
    cat.update(template, no_fuzzy_matching=True)
    cat.obsolete.clear()
    PO.parent.mkdir(parents=True, exist_ok=True)
    with PO.open("wb") as f:
        write_po(f, cat, width=110, sort_output=False, omit_header=False)
    MO.write_bytes(compiled(read()))
    missing = sum(1 for m in cat if m.id and not translated(m))
    return len(cat), missing


def translated(m) -> bool:
    """A German text for the message (every plural form), not marked fuzzy."""
    forms = [m.string] if isinstance(m.string, str) else list(m.string or [])
    return bool(forms) and all(forms) and not m.fuzzy


def main() -> int:
    total, missing = update()
    print(f"{PO.relative_to(ROOT)}: {total} strings, {missing} without a German translation")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
