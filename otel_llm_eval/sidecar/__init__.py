"""The sidecar: a small core (config, state, store, HTTP face, metrics collector), the ingest
pipeline (ingest/) and one package per capability (plugins/)."""

from . import _moved

_moved.install()
