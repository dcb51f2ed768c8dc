"""Human review (layer 3 of the evaluation cascade): sampling into a review queue, the labeling API
and page, label metrics, judge–human agreement, labels fed back as `human` evaluations.

plugin (ReviewPlugin: state, ingest hooks, flush/load, metrics) · api (routes and the labeling
page) · sampling (which calls are reviewed) · analysis (label summaries, agreement) · static/ (the
page's files). Config section `review`; docs/human-review.md.
"""

from .plugin import CONFIG_DEFAULTS, LabelError, ReviewPlugin, item_id_for, read_labels

__all__ = ["CONFIG_DEFAULTS", "LabelError", "ReviewPlugin", "item_id_for", "read_labels"]
