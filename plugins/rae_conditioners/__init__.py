"""rae-framework's built-in conditioner components."""
