"""First-party rae-framework plugin: flow."""
