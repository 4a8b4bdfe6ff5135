"""The complete contract suite: every kind, every registered component's ``-tiny`` presets.

Run it on your plugin's components without writing a test file::

    pytest --pyargs rae_framework.testing.suite --rae-contract-plugin YOUR_PLUGIN
"""

from rae_framework.testing.contracts import (
    ConditionerContract,
    DecoderContract,
    DenoiserContract,
    DiscriminatorContract,
    EncoderContract,
    GuidanceContract,
    MetricContract,
    OtherKindsContract,
    PerceptualContract,
    SamplerContract,
    ScheduleContract,
    StageContract,
    TrackerContract,
)


class TestEncoders(EncoderContract):
    """Every encoder."""


class TestDecoders(DecoderContract):
    """Every decoder."""


class TestDenoisers(DenoiserContract):
    """Every denoiser."""


class TestSchedules(ScheduleContract):
    """Every noise schedule."""


class TestSamplers(SamplerContract):
    """Every sampler."""


class TestDiscriminators(DiscriminatorContract):
    """Every discriminator."""


class TestGuidance(GuidanceContract):
    """Every guidance."""


class TestMetrics(MetricContract):
    """Every metric."""


class TestPerceptualLosses(PerceptualContract):
    """Every perceptual loss."""


class TestStages(StageContract):
    """Every stage."""


class TestTrackers(TrackerContract):
    """Every experiment tracker."""


class TestConditioners(ConditionerContract):
    """Every conditioner."""


class TestOtherKinds(OtherKindsContract):
    """Every component of a kind added by a plugin."""
