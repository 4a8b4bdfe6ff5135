"""First-party rae-framework plugin: encoders."""
