"""The installer's tool: per-node credentials, broker password and ACL files, node config."""
