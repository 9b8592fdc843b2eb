"""arka_git_hcm: the Arka OS Hybrid Collective Memory as a git-backed versioned store.

The public surface (pinned by tests/test_public_api.py)::

    from arka_git_hcm import HcmStore, load_settings, init_hcm, verify_hcm
    with HcmStore.open(load_settings(client="./arka-client")) as store:
        response = store.execute({"op": "HCM_LIST_MISSIONS", "request_id": "r1",
                                  "caller": {"type": "human", "id": "ops", "roles": ["reader"]},
                                  "payload": {}})

Names are loaded lazily so that importing a foundation module (errors, paths) does not pull in
the git adapter or the services.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "HcmStore": "arka_git_hcm.services.store",
    "OPERATIONS": "arka_git_hcm.services.store",
    "init_hcm": "arka_git_hcm.admin.init",
    "verify_hcm": "arka_git_hcm.admin.verify",
    "Settings": "arka_git_hcm.config",
    "load_settings": "arka_git_hcm.config",
    "HcmError": "arka_git_hcm.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arka_git_hcm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
