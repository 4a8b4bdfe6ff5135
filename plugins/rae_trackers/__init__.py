"""rae-framework's built-in tracker components."""
