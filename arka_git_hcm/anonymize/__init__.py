"""Anonymized support bundles (issue 14): the HCM's history replayed into a new repository with
every personal or secret value replaced by a keyed pseudonym of the same shape, written as a git
bundle, then proven clean by a scan of every object of the bundle.

    from arka_git_hcm.anonymize import AnonymizeOptions, anonymize_hcm
    report = anonymize_hcm(settings, AnonymizeOptions(out=Path("support.bundle")))

Modules, one concept each: normalize (folding), detectors (fields and patterns), pseudonyms
(keyed shapes), dictionary (the values and their matcher), stream (git's fast-export format),
analysis (pass 1), rewriter (one file, path, message), replay (pass 2), leakscan (the proof),
report, key, service (the whole run). Git itself is driven from gitrepo/plumbing_replay.py
(fast-export, refs, bundles, every object); the new history's objects are written by
gitrepo/history_pack.py; the push goes through custody's remotes.
"""

from .key import AnonymizeKey, load_key
from .leakscan import LeakFound, ScanResult
from .report import AnonymizeReport
from .service import AnonymizeOptions, Progress, anonymize_hcm, check_bundle

__all__ = [
    "AnonymizeKey",
    "AnonymizeOptions",
    "AnonymizeReport",
    "LeakFound",
    "Progress",
    "ScanResult",
    "anonymize_hcm",
    "check_bundle",
    "load_key",
]
