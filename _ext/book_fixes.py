"""Sphinx fixes for building this book (loaded through ``sphinx.local_extensions`` in ``_config.yml``)."""

from __future__ import annotations


def dedupe_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Drop repeated inline scripts from a page.

    Sphinx 7.4 (which Jupyter Book 1 requires) writes an inline script that an extension adds after
    the builder started twice: once as registered (file name ``None``) and once when
    ``prepare_writing`` re-adds the registry (file name ``""``). sphinx-thebe's is a ``const``
    declaration, so the copy is a SyntaxError in every page's console.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = (js.filename or "", tuple(sorted(js.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique  # in place: the builder restores its own list after each page


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)  # after extensions add their scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
