"""The contract suite over the whole registry: components are picked up as soon as they are registered."""

from rae_framework.testing.suite import (  # noqa: F401 - pytest collects the imported classes
    TestConditioners,
    TestDecoders,
    TestDenoisers,
    TestDiscriminators,
    TestEncoders,
    TestGuidance,
    TestMetrics,
    TestOtherKinds,
    TestPerceptualLosses,
    TestSamplers,
    TestSchedules,
    TestStages,
    TestTrackers,
)
