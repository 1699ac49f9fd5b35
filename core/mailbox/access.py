"""What each kind of login may do in each folder of its mailbox: one table, read by every door.

A rule names a folder and the actions allowed on what it holds:

* `list`   see the folder and the names in it;
* `read`   read (download) its files;
* `write`  create files in it (uploads, resumed uploads, renaming a temporary name to its final one);
* `delete` delete its files.

An action may depend on a flag of the login (a partner's `can_delete_downloads`): the rule names
the attribute, read from whatever login object is asked about (`LoginUser`, a `Partner` row).
The REST API's permission words, the SFTP modes and the FTP `perm` facts are all derived from the
actions here, so the next kinds of login (an account's users, B2B outboxes) are new rows in
`RULES`, not new code in each door.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from core.mailbox.layout import DOWNLOAD, UPLOAD, is_hidden, is_tradelane_temp_name

HOME: Final = ""  # the home folder itself, as a rule's folder
B2B: Final = "b2b"  # an account user's folder of the account's B2B outboxes (core/mailbox/outboxes.py)


class Action(StrEnum):
    LIST = "list"
    READ = "read"
    WRITE = "write"
    DELETE = "delete"


class LoginKind(StrEnum):
    PARTNER = "partner"
    USER = "user"  # an account user: a virtual home holding `b2b/`, whose children are the outboxes


@dataclass(frozen=True)
class FolderRule:
    folder: str
    actions: frozenset[Action]
    # action -> the login attribute that must be true for it (absent: always allowed)
    needs: Mapping[Action, str] = field(default_factory=dict)


def _rule(folder: str, *actions: Action, needs: Mapping[Action, str] | None = None) -> FolderRule:
    return FolderRule(folder, frozenset(actions), dict(needs or {}))


LIST, READ, WRITE, DELETE = Action.LIST, Action.READ, Action.WRITE, Action.DELETE

# Per kind of login, its home's folders in listing order; HOME first.
RULES: Final[Mapping[LoginKind, tuple[FolderRule, ...]]] = {
    LoginKind.PARTNER: (
        _rule(HOME, LIST),
        _rule(DOWNLOAD, LIST, READ, DELETE, needs={DELETE: "can_delete_downloads"}),
        _rule(UPLOAD, LIST, WRITE),
    ),
    # An account user's home holds no files of its own: only `b2b/`, listing the account's outboxes
    # (one folder each); what may be done inside an outbox depends on its connection's state and
    # the receiver's allow-view (`core.mailbox.outboxes.Outbox.actions`).
    LoginKind.USER: (
        _rule(HOME, LIST),
        _rule(B2B, LIST),
    ),
}


@dataclass(frozen=True)
class Access:
    """What one login may do, folder by folder. Folders outside the table allow nothing."""

    actions: Mapping[str, frozenset[Action]]

    @property
    def folders(self) -> tuple[str, ...]:
        """The folders under the home, in listing order."""
        return tuple(f for f in self.actions if f != HOME)

    def allowed(self, folder: str) -> frozenset[Action]:
        return self.actions.get(folder, frozenset())

    def allows(self, folder: str, action: Action) -> bool:
        return action in self.allowed(folder)

    def first_allowing(self, action: Action) -> str | None:
        """The first folder where `action` is allowed (to tell a client where to go instead)."""
        return next((f for f in self.folders if self.allows(f, action)), None)

    def may_name(self, folder: str, name: str) -> bool:
        """Whether a login may address `name` in `folder` at all. Hidden names are reserved, except
        another tradelane's temporary upload name in a folder the login may write to."""
        return not is_hidden(name) or (self.allows(folder, WRITE) and is_tradelane_temp_name(name))


def access_of(login: object, kind: LoginKind = LoginKind.PARTNER) -> Access:
    """The access `login` (any object with the attributes the rules name) has to its mailbox."""
    actions: dict[str, frozenset[Action]] = {}
    for rule in RULES[kind]:
        # A login without the attribute a rule names does not get the action.
        refused = {action for action, flag in rule.needs.items() if not getattr(login, flag, False)}
        actions[rule.folder] = rule.actions - refused
    return Access(actions)
