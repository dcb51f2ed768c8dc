"""The labeling page's files (static/review.html, review.js, review.css), read from the package.

No FastAPI here: plugin.py re-exports these names and must import without the sidecar extra.
"""

from __future__ import annotations

from importlib import resources

#: The page's assets served under /review/assets/ (a whitelist: nothing else of the package is).
STATIC_FILES = {"review.js": "application/javascript", "review.css": "text/css"}


def static_text(name: str) -> str:
    """A file of the labeling page (review.html, review.js, review.css), read from the package."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


__all__ = ["STATIC_FILES", "static_text"]
