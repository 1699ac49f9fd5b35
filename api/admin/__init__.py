"""The admin REST API under /api/admin: what an account's users manage, by bearer token.

The same core functions as the CLI and the console, with the caller's `Scope` (its own account and
role); the same input and answer models as the console and the CLI's `--json` (`schemas.py`, which
imports no web framework, so the CLI can use it cheaply). No cookie is read here, so no CSRF applies.
The routes are gathered in `router.py`.
"""
