"""The public surface for people who extend tradelane: `tradelane.templates` (write and register a
flow template) and `tradelane.testing` (run one in a test). The application itself lives in the
sibling packages (core, tasks, flows, deployments, api, mailboxes, cli)."""
