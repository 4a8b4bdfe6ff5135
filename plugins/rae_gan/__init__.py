"""First-party rae-framework plugin: gan."""
