"""The admin REST API under /api/admin: what an account's users manage, by bearer token."""
