"""Anonymized support bundles (issue 14): see :mod:`.service`."""
