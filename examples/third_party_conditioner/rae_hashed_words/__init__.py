"""Template rae-framework plugin: the ``hashed-words`` conditioner."""
