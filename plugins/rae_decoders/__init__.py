"""First-party rae-framework plugin: decoders."""
