"""rae-framework's stage contract, run on this plugin's stages (every '-tiny' preset of them)."""

from rae_framework.testing import contract_tests_for

TestLatentProbeContract = contract_tests_for("stage", "latent_probe")
TestEncoderDistillContract = contract_tests_for("stage", "encoder_distill")
