"""Human review (layer 3 of the evaluation cascade): sampling into a review queue, the labeling API
and page, label metrics, judge–human agreement, labels fed back as `human` evaluations.

plugin (ReviewPlugin: state, ingest hooks, flush/load; CONFIG_DEFAULTS) · settings (the section's
checks, the truncate-then-redact text rule) · sampling (which calls are reviewed) · labeling (label
validation, item and issue ids) · feedback (labels as evaluations, handed to the core) · metrics
(label counters, the /metrics families) · analysis (label summaries, agreement) · api (routes) ·
page and static/ (the labeling page's files). api imports no plugin module: plugin.py builds the
router by handing itself to api.build_router. Config section `review`; docs/human-review.md.
"""

from .plugin import CONFIG_DEFAULTS, LabelError, ReviewPlugin, item_id_for, read_labels

__all__ = ["CONFIG_DEFAULTS", "LabelError", "ReviewPlugin", "item_id_for", "read_labels"]
