"""Real servers the endpoint tests talk to, one module per server, started once per session."""
