"""Who is asking and what they may do (pure: no I/O).

A ``Principal`` is a person logged in (``kind == "person"``: owner, manager, staff) or a system
with an API key (``kind == "key"``: ingest, read, admin). Tenant and branches come from the
credential only. ``branches`` empty means the whole chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

CHAIN = "all"
PERSON_ROLES = ("owner", "manager", "staff")
KEY_ROLES = ("ingest", "read", "admin")


class Permission(StrEnum):
    """What a route needs; shared/access/policy.py names one for every route."""

    INGEST = "ingest"  # send purchases, upload and follow imports
    REPORTS = "reports"  # portfolio, history, transitions, analyses, rules (read)
    LISTS = "lists"  # customer lists with personal data: segment, RFM and DM lists (read)
    EDIT_LISTS = "edit_lists"  # DM response tables (write)
    CUSTOMERS = "customers"  # one customer's page
    FOLLOWUPS = "followups"  # the task list, alerts, comebacks (read)
    WORK_FOLLOWUPS = "work_followups"  # mark a follow-up done
    SETTINGS = "settings"  # rules, thresholds, notification settings, sequences (write)
    PEOPLE = "people"  # the audit log, erasure, people and keys


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "owner": frozenset(Permission),
    "admin": frozenset(Permission),
    "manager": frozenset(
        {
            Permission.REPORTS,
            Permission.LISTS,
            Permission.EDIT_LISTS,
            Permission.CUSTOMERS,
            Permission.FOLLOWUPS,
            Permission.WORK_FOLLOWUPS,
        }
    ),
    "staff": frozenset({Permission.CUSTOMERS, Permission.FOLLOWUPS, Permission.WORK_FOLLOWUPS}),
    "read": frozenset(
        {Permission.REPORTS, Permission.LISTS, Permission.CUSTOMERS, Permission.FOLLOWUPS}
    ),
    "ingest": frozenset({Permission.INGEST}),
}


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    kind: str  # "person" | "key"
    role: str
    branches: tuple[str, ...]  # empty: the whole chain
    subject: str  # a person's e-mail, or the key's id
    name: str = ""  # the key's name (people: empty)
    person_id: int | None = None

    @property
    def chain_wide(self) -> bool:
        return not self.branches

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        if self.kind == "person":
            return self.subject
        return f"key:{self.subject} ({self.name})" if self.name else f"key:{self.subject}"

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())

    def covers(self, branch_id: str | None) -> bool:
        """True when this caller may see a branch's data (``all``/None: the whole chain)."""
        if self.chain_wide:
            return True
        return branch_id not in (None, CHAIN) and branch_id in self.branches

    def visible_branches(self, branch_ids) -> list[str]:
        return [b for b in branch_ids if self.chain_wide or b in self.branches]
