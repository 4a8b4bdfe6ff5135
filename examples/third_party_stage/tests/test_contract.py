"""rae-framework's stage contract, run on this plugin's stage (every '-tiny' preset of it)."""

from rae_framework.testing import contract_tests_for

TestLatentProbeContract = contract_tests_for("stage", "latent_probe")
