"""rae-patch-mean: a template third-party plugin for rae-framework (a frozen patch-projection encoder)."""
