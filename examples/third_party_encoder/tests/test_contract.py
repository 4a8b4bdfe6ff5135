"""rae-framework's encoder contract, run on this plugin's encoder (every '-tiny' preset of it)."""

from rae_framework.testing import contract_tests_for

TestPatchMeanContract = contract_tests_for("encoder", "patch-mean")
