"""The introduction's "at a glance" table, made from book/results/*.json at each build (zfkit.glance).

A fenced ``{verdicts-at-a-glance}`` block in a page is replaced, before MyST parses the page, by the
table of every chapter's claims and verdicts, so the rendered book can never show verdicts that the
chapters' saved results do not hold.
"""

from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"^```\{verdicts-at-a-glance\}\s*\n```\s*$", re.M)


def insert_table(app, docname: str, source: list[str]) -> None:
    if not BLOCK.search(source[0]):
        return
    from zfkit.glance import markdown, rows
    from zfkit.notebooks import chapters

    root = Path(app.srcdir)
    found = rows(root / "book" / "results", chapters(root / "_toc.yml"))
    page = Path(docname).parent
    prefix = "" if page == Path("book") else "book/"
    source[0] = BLOCK.sub(lambda _: markdown(found, prefix), source[0])


def setup(app):
    app.connect("source-read", insert_table)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
