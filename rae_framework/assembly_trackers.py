"""The ``trackers`` section of an assembly: which experiment trackers (kind ``tracker``) a run logs to.

Each item is a registered tracker's name or ``{name, params}``::

    trackers: [tensorboard, {name: wandb, params: {project: rae}}]

Absent, it is ``[tensorboard]`` (TensorBoard events, as every run wrote before trackers were a kind; none
when the session has no ``tensorboard`` tracker);
``trackers: []`` logs to none. Names are checked against the registry (with a suggestion), each tracker's
params by its Config, and a tracker named twice is an error (its run id is kept under its name).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rae_framework.registry import NAME_PATTERN, did_you_mean
from rae_framework.tracker import TRACKER_KIND

DEFAULT_TRACKERS = ("tensorboard",)


class TrackerEnvelope(BaseModel):
    """One tracker, written as a mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=NAME_PATTERN.pattern, description="Registered tracker name, e.g. 'wandb'.")
    params: dict[str, Any] = Field(default_factory=dict, description="The tracker's parameters (its Config).")


class TrackerSpec(BaseModel):
    """A resolved tracker: its name and complete validated params."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(..., description="Registered tracker name.")
    params: dict[str, Any] = Field(..., description="Every parameter of the validated Config (JSON values).")
    config: Any = Field(None, exclude=True, repr=False, description="The validated Config object.")


def resolve_trackers(raw: Any, session, issues) -> tuple[TrackerSpec, ...]:
    """The ``trackers`` items as specs; problems go to ``issues`` (the envelope reported a section that is
    not a list)."""
    if raw is None:  # absent: the defaults that are registered (a session may leave the tracker plugin out)
        raw = [name for name in DEFAULT_TRACKERS if session.registry.contains(TRACKER_KIND, name)]
    if not isinstance(raw, list):
        return ()
    specs, seen = [], set()
    for index, item in enumerate(raw):
        here = ("trackers", str(index))
        envelope = _envelope(item, here, issues)
        if envelope is None:
            continue
        if envelope.name in seen:
            issues.add(here, f"tracker '{envelope.name}' is named twice", envelope.name, show_value=False)
            continue
        seen.add(envelope.name)
        spec = _resolve(envelope, here, session, issues)
        if spec is not None:
            specs.append(spec)
    return tuple(specs)


def _envelope(item: Any, here: tuple[str, ...], issues) -> TrackerEnvelope | None:
    if isinstance(item, str):  # a bare name: checked against the registry, with a suggestion
        return TrackerEnvelope.model_construct(name=item, params={})
    if not isinstance(item, dict):
        issues.add(here, "a tracker is a name or a mapping {name, params}", item)
        return None
    try:
        return TrackerEnvelope.model_validate(item)
    except ValidationError as error:
        issues.add_validation(here, error, TrackerEnvelope)
        return None


def _resolve(envelope: TrackerEnvelope, here: tuple[str, ...], session, issues) -> TrackerSpec | None:
    known = session.registry.names(TRACKER_KIND)
    if envelope.name not in known:
        issues.add(here, f"Unknown tracker '{envelope.name}'.{did_you_mean(envelope.name, known)} "
                         f"Available: {', '.join(known) or 'none'}", show_value=False)
        return None
    model = session.registry.get(TRACKER_KIND, envelope.name).load_config_model()
    try:
        config = model.model_validate(envelope.params)
    except ValidationError as error:
        issues.add_validation((*here, "params"), error, model)
        return None
    return TrackerSpec(name=envelope.name, params=config.model_dump(mode="json"), config=config)
