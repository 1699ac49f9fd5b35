"""The server-rendered web pages (for now the invitation accept page, api/web/connect.py)."""
