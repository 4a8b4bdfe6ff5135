"""Unit tests of the stage-1 autoencoder (a package: test_interop.py also exists under tests/unit/denoisers/)."""
