"""The scope tests act in: the home account, as the CLI's instance operator does by default."""

from __future__ import annotations

from sqlmodel import Session

from core.tenancy import Scope, scope_for_cli


def home_scope(session: Session, actor: str = "cli") -> Scope:
    return scope_for_cli(session, "home", actor=actor)


def account_scope(session: Session, name: str, actor: str = "cli") -> Scope:
    return scope_for_cli(session, name, actor=actor)
