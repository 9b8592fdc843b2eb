"""Who may run which operation (contract section 6, "Zones").

- Reads need any role (reader, writer or admin).
- Writes need the writer or admin role.
- Agents write only through the four agent operations: journal (append), evidence (create),
  next actions and decisions. Everything else an agent asks to write is refused.
- ``state/team/`` is written by humans and the system; ``stable/`` and ``hindex/`` (documents)
  need the admin role.
- Roles come from the caller's identity (its token) plus ``rules.role_grants`` in
  ``hindex/meta_rules.json``, which only admins can write.
"""

from __future__ import annotations

from ..domain.envelope import Caller
from ..errors import AccessDenied, HcmError
from ..ids import ROLES
from ..jsonio import parse_json
from .base import OpSpec

__all__ = ["META_RULES", "authorize", "parse_role_grants"]

META_RULES = "hindex/meta_rules.json"


def parse_role_grants(raw: bytes | None) -> dict[str, list[str]]:
    """``rules.role_grants`` of meta_rules.json: caller label -> extra roles. Anything malformed
    grants nothing (a broken file must never widen access); verify reports the file itself."""
    if not raw:
        return {}
    try:
        value = parse_json(raw, what=META_RULES)  # strict, as every HCM file: no duplicate keys
        grants = value["rules"]["role_grants"]
    except (HcmError, KeyError, TypeError):
        return {}
    if not isinstance(grants, dict):
        return {}
    result: dict[str, list[str]] = {}
    for label, roles in grants.items():
        if isinstance(label, str) and isinstance(roles, list):
            result[label] = [r for r in roles if r in ROLES]
    return result


def authorize(spec: OpSpec, caller: Caller) -> None:
    roles = set(caller.roles)
    if not roles:
        raise AccessDenied(f"{caller.label} has no role; give it reader, writer or admin")
    if spec.kind == "write":
        if not roles & {"writer", "admin"}:
            raise AccessDenied(f"{spec.name} writes: {caller.label} needs the writer or admin role")
        if caller.type == "agent" and spec.zone != "agent_ok":
            raise AccessDenied(
                f"agents may write only the journal, evidence, next actions and decisions; "
                f"{spec.name} needs a human or system caller"
            )
        if spec.zone == "admin" and "admin" not in roles:
            raise AccessDenied(
                f"{spec.name} needs the admin role ({caller.label} has {', '.join(sorted(roles))})"
            )
