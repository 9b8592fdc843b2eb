"""The names users may rely on, pinned: changing them is a deliberate, visible act."""

from __future__ import annotations

import arka_git_hcm
from arka_git_hcm.services.store import OPERATIONS


def test_public_names_are_pinned() -> None:
    assert arka_git_hcm.__all__ == sorted(
        [
            "HcmError",
            "HcmStore",
            "OPERATIONS",
            "Settings",
            "__version__",
            "init_hcm",
            "load_settings",
            "verify_hcm",
        ]
    )
    for name in arka_git_hcm.__all__:
        assert getattr(arka_git_hcm, name) is not None


def test_the_operation_table_matches_the_contract() -> None:
    contract_ops = {
        "HCM_CREATE_MISSION",
        "HCM_GET_MISSION_CONTEXT",
        "HCM_LIST_MISSIONS",
        "HCM_APPEND_JOURNAL",
        "HCM_ADD_EVIDENCE",
        "HCM_UPDATE_NEXT_ACTIONS",
        "HCM_RECORD_DECISION",
        "HCM_GET_DECISIONS",
        "HCM_UPDATE_STATUS",
        "HCM_SNAPSHOT_MISSION",
        "HCM_DAY_ROLLUP",
        "HCM_PREPARE_DAY_CONTEXT",
        "HCM_ROTATE_JOURNAL",
        "HCM_GET_TEAM",
        "HCM_UPSERT_TEAM_MEMBER",
        "HCM_GET_DOCUMENT",
        "HCM_PUT_DOCUMENT",
        "HCM_SEARCH",
    }
    assert contract_ops <= set(OPERATIONS)
    kinds = {name: spec.kind for name, spec in OPERATIONS.items()}
    assert kinds["HCM_GET_MISSION_CONTEXT"] == "read" and kinds["HCM_APPEND_JOURNAL"] == "write"


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        arka_git_hcm.nope  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
