"""Who may run which operation (contract section 6, "Zones").

- Reads need any role (reader, writer or admin).
- Writes need the writer or admin role.
- Agents write only through the four agent operations: journal (append), evidence (create),
  next actions and decisions. Everything else an agent asks to write is refused.
- ``state/team/`` is written by humans and the system; ``stable/`` and ``hindex/`` (documents)
  need the admin role.
"""

from __future__ import annotations

from ..domain.envelope import Caller
from ..errors import AccessDenied
from .ops_base import OpSpec

__all__ = ["authorize"]


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
            raise AccessDenied(f"{spec.name} writes stable/, domain/ or hindex/: it needs the admin role")
