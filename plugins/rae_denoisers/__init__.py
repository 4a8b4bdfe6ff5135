"""First-party rae-framework plugin: denoisers."""
