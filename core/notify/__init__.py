"""Notifications: what tradelane tells people and systems about files (events, channels, rules)."""
