"""First-party rae-framework plugin: metrics."""
