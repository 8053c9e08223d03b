"""Every `miroir_*` error code has an entry in docs/errors.md, and every error's `link`
resolves to that entry (issue 12 §2).

The link is the repository path of docs/errors.md with the code as the anchor; GitHub makes
a heading's anchor by lowercasing it, dropping punctuation but `-` and `_`, and turning
spaces into `-`, so the heading `## miroir_no_quorum` is `#miroir_no_quorum`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from miroir_proxy.core.errors import CODES, MIROIR_LINK, MiroirError

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs" / "errors.md"
SOURCES = sorted((REPO / "proxy" / "miroir_proxy").rglob("*.py"))
MIROIR_CODES = sorted(code for code in CODES if code.startswith("miroir_"))
# A code literal where an error is built: `MiroirError("miroir_x"`, `node_error("miroir_x"`
# or on the next line of such a call.
RAISED = re.compile(r"(?:MiroirError|node_error)\(\s*\"(miroir_[a-z_]+)\"")


def _anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _entries() -> dict[str, str]:
    """anchor -> the entry's text (up to the next heading)."""
    text = DOCS.read_text(encoding="utf-8")
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {_anchor(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_the_link_names_the_shipped_page() -> None:
    base, _, anchor = MIROIR_LINK.partition("#")
    assert anchor == ""
    _, _, path = base.partition("/blob/main/")
    assert path == "docs/errors.md" and (REPO / path).is_file()


def test_every_code_raised_in_the_code_is_known_and_documented() -> None:
    raised = {code for source in SOURCES for code in RAISED.findall(source.read_text())}
    assert len(raised) >= 10, raised
    assert raised <= set(MIROIR_CODES)
    assert set(MIROIR_CODES) <= set(_entries())


def test_the_page_documents_only_existing_codes() -> None:
    assert set(_entries()) == set(MIROIR_CODES)


@pytest.mark.parametrize("code", MIROIR_CODES)
def test_each_entry_gives_status_type_and_what_to_do(code: str) -> None:
    status, kind = CODES[code]
    entry = _entries()[code]
    assert f"**Status** {status} · **type** `{kind}`" in entry
    assert "What to do:" in entry
    link = MiroirError(code, "message").to_dict()["link"]
    assert link.startswith(MIROIR_LINK)
    assert link.partition("#")[2] in _entries()
