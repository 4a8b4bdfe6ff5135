"""rae-framework's conditioner contract, run on this plugin's conditioner (every '-tiny' preset of it)."""

from rae_framework.testing import contract_tests_for

TestHashedWordsContract = contract_tests_for("conditioner", "hashed-words")
