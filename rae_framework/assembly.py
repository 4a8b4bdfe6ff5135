"""Assemblies: a YAML file naming the components of a run, validated in stages and resolved completely.

1. The YAML is read with ``yaml.safe_load`` semantics and a line map (:mod:`rae_framework.yaml_lines`);
   ``--set a.b=value`` overrides are applied on top.
2. The envelope is validated: ``name``, ``seed``, ``components`` (role -> ``{kind?, name, preset?, params}``),
   and the ``autoencoder``, ``data`` and ``stages`` sections with their own models.
3. Each component is resolved through the session's registry and presets, derived values are filled in
   (the latent shape from the encoder's Config), and the params are validated by the component's Config.
4. The ``stages`` section: each key names a registered stage (kind ``stage``) whose Config validates its
   settings; then the rules the stages' specs imply (the roles each enabled stage needs) and each stage's
   own cross-checks (known metric names, ...).
5. What a run would hit later (:mod:`rae_framework.assembly_checks`): guidance roles, the null label, image
   size, class count, missing paths.

Every problem of every stage is collected and raised together as one :class:`AssemblyError`, each with
``file:line``, the dotted path and the offending value. Nothing here imports torch or a component's class;
YAML can only name registered components, never an import path.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from rae_framework import assembly_checks
from rae_framework.assembly_trackers import TrackerSpec, resolve_trackers
from rae_framework.condition_fields import CONDITIONER_KIND, ConditionFields
from rae_framework.config import AutoencoderConfig, LatentShape, latent_shape_of
from rae_framework.data.config import DataConfig
from rae_framework.errors import AssemblyError, ConfigError, ConfigIssue
from rae_framework.latent_fields import LatentFields
from rae_framework.presets import Preset
from rae_framework.registry import NAME_PATTERN, Entry, did_you_mean
from rae_framework.session import Session
from rae_framework.stage import STAGE_KIND, StageCheckContext, StageConfig, Stages
from rae_framework.yaml_lines import PathKey, SourceMap, apply_override, load_yaml_file, parse_override

RECIPE_KIND = "recipe"  # pseudo-kind of registry/recipes.yaml: presets that point at assembly files

class ComponentEnvelope(BaseModel):
    """Stage-1 view of one component: which one, from which preset, with which params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str | None = Field(None, description="Component kind; defaults to the role name (e.g. role "
                                               "'encoder' -> kind 'encoder'). Required for extra roles.")
    name: str = Field(..., pattern=NAME_PATTERN.pattern, description="Registered component name, e.g. 'dit-dh'.")
    preset: str | None = Field(None, description="Preset (registry/*.yaml) whose params are merged under params.")
    params: dict[str, Any] = Field(default_factory=dict, description="Component parameters (its Config).")
    checkpoint: str | None = Field(None, description="Trained weights to load after building: a safetensors "
                                                     "state dict (e.g. a run's checkpoints/*_ema.safetensors). "
                                                     "A run's own training stage output takes precedence.")


class AssemblyEnvelope(BaseModel):
    """Stage-1 view of a whole assembly file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=NAME_PATTERN.pattern, description="Run name.")
    seed: int = Field(0, ge=0, description="Global random seed (a non-negative integer).")
    components: dict[str, ComponentEnvelope] = Field(default_factory=dict,
                                                     description="Role -> component specification.")
    autoencoder: AutoencoderConfig = Field(default_factory=AutoencoderConfig, description="RAE settings.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training data.")
    stages: dict[str, Any] = Field(default_factory=dict, description="Registered stage name -> its settings "
                                                                     "(a mapping; {} for the defaults). Stages "
                                                                     "run in their registered order.")
    trackers: list[Any] | None = Field(None, description="Experiment trackers (kind 'tracker'): "
                                                                   "names or {name, params}; absent: "
                                                                   "[tensorboard]; [] for none.")


class ComponentSpec(BaseModel):
    """A resolved component: kind, name, preset and the complete validated params (derived values included)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    kind: str = Field(..., description="Component kind.")
    name: str = Field(..., description="Registered component name.")
    preset: str | None = Field(None, description="Preset the params started from.")
    params: dict[str, Any] = Field(..., description="Every parameter of the validated Config (JSON values).")
    checkpoint: str | None = Field(None, description="Safetensors state dict loaded after building.")
    config: Any = Field(None, exclude=True, repr=False, description="The validated Config object.")


class Assembly(BaseModel):
    """A validated, fully resolved assembly. Build components with :meth:`build`."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(..., description="Run name.")
    seed: int = Field(0, ge=0, description="Global random seed (a non-negative integer).")
    components: dict[str, ComponentSpec] = Field(default_factory=dict, description="Role -> resolved component.")
    autoencoder: AutoencoderConfig = Field(default_factory=AutoencoderConfig, description="RAE settings.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training data.")
    stages: Stages = Field(default_factory=Stages, description="Validated stage settings, in run order.")
    trackers: tuple[TrackerSpec, ...] = Field((), description="Resolved experiment trackers, rank 0 logs to.")
    source: str | None = Field(None, description="The file it was read from.")
    warnings: tuple[str, ...] = Field((), description="Advice that did not stop validation.")
    _session: Session | None = PrivateAttr(None)

    @property
    def session(self) -> Session:
        """The session that validated this assembly (its plugins and registry); builds use it."""
        if self._session is None:
            self._session = Session()
        return self._session

    @property
    def latent_shape(self) -> LatentShape | None:
        """``(C, h, w)`` of the latents, derived from the encoder's Config (None without an encoder)."""
        encoder = self.components.get("encoder")
        return latent_shape_of(encoder.config) if encoder is not None else None

    def spec(self, role: str) -> ComponentSpec:
        """The resolved component of ``role``, or a :class:`ConfigError` listing the roles."""
        if role not in self.components:
            raise ConfigError(f"Assembly '{self.name}' has no component '{role}'. "
                              f"Roles: {', '.join(sorted(self.components)) or 'none'}")
        return self.components[role]

    def build(self, role: str, session: Session | None = None) -> Any:
        """A ready component for ``role`` (imports its class, hence torch, only now)."""
        from rae_framework import compat

        spec = self.spec(role)
        session = session or self.session
        compat.ensure_torchvision_importable()
        component = session.build_from_config(session.registry.get(spec.kind, spec.name), spec.config)
        if spec.checkpoint is not None:
            load_checkpoint_into(component, spec.checkpoint, f"components.{role}.checkpoint")
        return component

    def resolved(self) -> dict[str, Any]:
        """The resolved assembly as plain data (presets merged, derived values filled, defaults explicit)."""
        return {
            "name": self.name,
            "seed": self.seed,
            "components": {role: spec.model_dump(mode="json") for role, spec in self.components.items()},
            "autoencoder": self.autoencoder.model_dump(mode="json"),
            "data": self.data.model_dump(mode="json"),
            "stages": self.stages.dump(),
            "trackers": [spec.model_dump(mode="json") for spec in self.trackers],
        }

    def to_yaml(self) -> str:
        """:meth:`resolved` as YAML text; loading it again gives the same assembly."""
        return yaml.safe_dump(self.resolved(), sort_keys=False, default_flow_style=None, width=120)


class _Issues:
    """Collects the problems (and warnings) of one file, each located through the source map."""

    def __init__(self, source_map: SourceMap) -> None:
        self.source_map = source_map
        self.items: list[ConfigIssue] = []
        self.warnings: list[str] = []

    def add(self, path: PathKey, message: str, value: Any = None, *, show_value: bool = True,
            within: bool = False) -> None:
        """An error at ``path``; ``within``: raised by a model validator of ``path``, so a ``--set`` below
        ``path`` is the likelier culprit than the line that opened it."""
        path = tuple(str(part) for part in path)
        self.items.append(ConfigIssue(self.source_map.locate(path, within=within), ".".join(path), message,
                                      value=value, show_value=show_value))

    def warn(self, path: PathKey, message: str) -> None:
        """Advice at ``path`` that does not stop validation."""
        path = tuple(str(part) for part in path)
        self.warnings.append(f"{self.source_map.locate(path)}: {'.'.join(path)}: {message}")

    def add_validation(self, prefix: PathKey, error: ValidationError, model: type[BaseModel] | None = None) -> None:
        """pydantic's errors of ``model`` validated at ``prefix`` (the model lets misspelled keys get a
        suggestion)."""
        for item in error.errors():
            self.add_error_item(prefix, item, model)

    def add_error_item(self, prefix: PathKey, item: Any, model: type[BaseModel] | None) -> None:
        """One pydantic error: a misspelled key gets a suggestion, a model validator's error no value dump."""
        loc, message = tuple(item["loc"]), item["msg"]
        if item["type"] == "extra_forbidden" and loc:
            suggestion = did_you_mean(str(loc[-1]), fields_at(model, loc[:-1]))
            message += f".{suggestion}" if suggestion else ""
        at_model = item["type"] in ("value_error", "assertion_error") and bool(fields_at(model, loc))  # its validator
        self.add((*prefix, *loc), message, item.get("input"),
                 show_value=item["type"] != "missing" and not at_model, within=at_model)

    def raise_if_any(self) -> None:
        """Raise every issue at once, in file order (then the ``--set`` overrides)."""
        if self.items:
            raise AssemblyError(self.source_map.origin, sorted(self.items, key=self._order))

    def _order(self, issue: ConfigIssue) -> tuple[int, int]:
        origin, _, line = issue.location.rpartition(":")
        return (0, int(line)) if origin == self.source_map.origin and line.isdigit() else (1, 0)


def fields_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model reached from ``model`` along ``loc`` (through nested models, optional
    models and mappings); empty when ``loc`` does not end at a model."""
    annotation = model
    for part in loc:
        annotation = _step(annotation, str(part))
    found = _as_model(annotation)
    return list(found.model_fields) if found is not None else []


def _step(annotation: Any, part: str) -> Any:
    model = _as_model(annotation)
    if model is not None:
        field = model.model_fields.get(part)
        return field.annotation if field is not None else None
    return typing.get_args(annotation)[1] if typing.get_origin(annotation) is dict else None


def _as_model(annotation: Any) -> type[BaseModel] | None:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    candidates = typing.get_args(annotation) if union else (annotation,)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def load_assembly(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                  session: Session | None = None) -> Assembly:
    """Read, override, validate and resolve an assembly file; raises :class:`AssemblyError` listing every problem."""
    data, source_map = load_yaml_file(path)
    for override in overrides:
        key, value = parse_override(override)
        data = apply_override(data if data is not None else {}, key, value)
        source_map.overrides[key] = f"--set {override}"
    return validate_assembly(data, source_map, session=session or Session(), source=str(path))


def validate_assembly(data: Any, source_map: SourceMap, *, session: Session, source: str | None = None) -> Assembly:
    """Validate already-parsed assembly data (see the module docstring for the stages)."""
    issues = _Issues(source_map)
    if not isinstance(data, dict):
        issues.add((), "an assembly is a mapping with 'name', 'components', 'stages', ...", data)
        issues.raise_if_any()
    envelope = _validate_envelope(data, issues)
    raw_components = data.get("components")
    roles = set(raw_components) if isinstance(raw_components, dict) else set()
    latent = LatentFields("encoder" in roles)
    components = _resolve_components(_component_envelopes(data), session, issues, latent)
    stages = _validate_stages(data.get("stages"), session, issues)
    trackers = resolve_trackers(data.get("trackers"), session, issues)
    _check_denoiser_classes(components, issues)
    warnings = _check_stages(stages, frozenset(roles), components, session, issues)
    if envelope is not None:
        assembly_checks.check_all(components, envelope.data, envelope.autoencoder, stages, issues)
    issues.raise_if_any()
    assembly = Assembly(name=envelope.name, seed=envelope.seed, components=components,
                        autoencoder=envelope.autoencoder, data=envelope.data, stages=stages, trackers=trackers,
                        source=source, warnings=(*issues.warnings, *_advice(components, latent.shape), *warnings))
    assembly._session = session
    return assembly


def _validate_envelope(data: dict[str, Any], issues: _Issues) -> AssemblyEnvelope | None:
    """The envelope; when invalid, its errors are reported and the valid sections are still returned (with
    defaults for the broken ones) so that the cross-component checks can report their problems too."""
    try:
        return AssemblyEnvelope.model_validate(data)
    except ValidationError as error:
        issues.add_validation((), error, AssemblyEnvelope)
        broken = {item["loc"][0] for item in error.errors() if item["loc"]}
    partial = {key: value for key, value in data.items() if key not in broken and key in AssemblyEnvelope.model_fields}
    try:
        return AssemblyEnvelope.model_validate({"name": "invalid", **partial})
    except ValidationError:
        return None


def _component_envelopes(data: dict[str, Any]) -> dict[str, ComponentEnvelope]:
    """The components whose envelope is valid (invalid ones were reported by :func:`_validate_envelope`)."""
    raw = data.get("components")
    envelopes = {}
    for role, body in (raw.items() if isinstance(raw, dict) else []):
        try:
            envelopes[str(role)] = ComponentEnvelope.model_validate(body)
        except ValidationError:
            continue
    return envelopes


def _resolve_components(envelopes: dict[str, ComponentEnvelope], session: Session, issues: _Issues,
                        latent: LatentFields) -> dict[str, ComponentSpec]:
    """Stage 2: every component's Config, the encoder first and the conditioner second, so that the fields
    derived from the latent shape (:mod:`rae_framework.latent_fields`) and from the conditioning
    (:mod:`rae_framework.condition_fields`) are filled into the others."""
    first = {"encoder": 0, CONDITIONER_KIND: 1}
    order = sorted(envelopes, key=lambda role: first.get(envelopes[role].kind or role, 2))
    specs: dict[str, ComponentSpec] = {}
    condition = ConditionFields()
    for role in order:
        spec = _resolve_component(role, envelopes[role], session, issues, latent, condition)
        if spec is not None:
            specs[role] = spec
            if role == "encoder" and spec.kind == "encoder":
                latent.take_encoder(spec, issues)
            if role == CONDITIONER_KIND and spec.kind == CONDITIONER_KIND:
                condition.take_conditioner(spec, issues)
    return {role: specs[role] for role in envelopes if role in specs}


def _resolve_component(role: str, envelope: ComponentEnvelope, session: Session, issues: _Issues,
                       latent: LatentFields, condition: ConditionFields) -> ComponentSpec | None:
    here = ("components", role)
    entry = _lookup(role, envelope, session, issues)
    if entry is None:
        return None
    try:
        merged = session.resolve_params(entry.kind, entry.name, envelope.params, envelope.preset)
    except ConfigError as error:
        issues.add((*here, "preset"), str(error), envelope.preset, show_value=False)
        return None
    model = entry.load_config_model()
    derived = latent.fill(role, entry.kind, model, merged, envelope.params, issues)
    derived = condition.fill(role, entry.kind, model, merged, envelope.params, issues) and derived
    try:
        config = model.model_validate(merged)
    except ValidationError as error:
        for item in error.errors():
            if not latent.handles_missing(here, entry.kind, item, issues):
                issues.add_error_item((*here, "params"), item, model)
        return None
    if not derived:
        return None
    return ComponentSpec(kind=entry.kind, name=entry.name, preset=envelope.preset,
                         params=config.model_dump(mode="json"), checkpoint=envelope.checkpoint, config=config)


def _lookup(role: str, envelope: ComponentEnvelope, session: Session, issues: _Issues) -> Entry | None:
    here = ("components", role)
    kind = envelope.kind or role
    if kind not in session.registry.kinds:
        if envelope.kind is None:
            issues.add(here, f"role '{role}' is not a component kind, so it needs an explicit 'kind' "
                             f"(one of: {', '.join(sorted(session.registry.kinds))})", show_value=False)
        else:
            issues.add((*here, "kind"), f"Unknown kind '{kind}'. Available kinds: "
                                        f"{', '.join(sorted(session.registry.kinds))}", kind, show_value=False)
        return None
    try:
        return session.registry.get(kind, envelope.name)
    except ConfigError as error:
        issues.add((*here, "name"), str(error), envelope.name, show_value=False)
        return None


def _validate_stages(raw: Any, session: Session, issues: _Issues) -> Stages:
    """Each ``stages`` key names a registered stage; its value (a mapping) is validated by that stage's Config."""
    configs: dict[str, StageConfig] = {}
    known = session.registry.names(STAGE_KIND)
    for name, body in (raw.items() if isinstance(raw, dict) else []):
        here = ("stages", str(name))
        if name not in known:
            issues.add(here, f"Unknown stage '{name}'.{did_you_mean(str(name), known)} "
                             f"Registered stages: {', '.join(known) or 'none'}", show_value=False)
        elif body is None:
            issues.add(here, f"stage '{name}' has no value, so it would be silently skipped; write "
                             f"'{name}: {{}}' for its defaults or 'enabled: false' to skip it", show_value=False)
        else:
            config = _validate_stage(name, body, session, issues)
            if config is not None:
                configs[str(name)] = config
    return Stages(configs)


def _validate_stage(name: str, body: Any, session: Session, issues: _Issues) -> StageConfig | None:
    model = session.registry.get(STAGE_KIND, name).load_config_model()
    try:
        return model.model_validate(body)
    except ValidationError as error:
        issues.add_validation(("stages", name), error, model)
        return None


def _check_stages(stages: Stages, declared: frozenset[str], components: dict[str, ComponentSpec],
                  session: Session, issues: _Issues) -> list[str]:
    """Each enabled stage has the roles its spec needs (of the right kind) and passes its own cross-checks;
    returns the warnings."""
    context = StageCheckContext(components, declared, stages, session)
    warnings = []
    for name in stages.enabled():
        for role in stages.spec(name).roles:
            if role not in declared:
                issues.add(("stages", name), f"stage '{name}' needs a component '{role}' under components",
                           show_value=False)
            elif role in components and role in session.registry.kinds and components[role].kind != role:
                issues.add(("components", role, "kind"), f"role '{role}' must be a {role}", components[role].kind)
        for problem in stages[name].check(context):
            path = problem.path if problem.path[:1] == ("components",) else ("stages", name, *problem.path)
            if problem.warning:
                warnings.append(f"{'.'.join(map(str, path))}: {problem.message}")
            else:
                issues.add(path, problem.message, problem.value, show_value=problem.value is not None)
    return warnings


def _check_denoiser_classes(components: dict[str, ComponentSpec], issues: _Issues) -> None:
    """A guide denoiser must predict for the same classes as the main one (the null label is shared)."""
    main = components.get("denoiser")
    expected = getattr(main.config, "num_classes", None) if main is not None else None
    for role, spec in components.items():
        classes = getattr(spec.config, "num_classes", None)
        if spec.kind == "denoiser" and role != "denoiser" and expected is not None and classes != expected:
            issues.add(("components", role, "params", "num_classes"),
                       f"must equal the main denoiser's num_classes ({expected})", classes)


def _advice(components: dict[str, ComponentSpec], shape: LatentShape | None) -> list[str]:
    """Non-fatal advice, e.g. a denoiser narrower than the latent channels (the paper's width rule)."""
    advice = []
    for role, spec in components.items():
        width = getattr(spec.config, "token_width", None)  # the widest layer that sees the tokens
        if spec.kind == "denoiser" and shape is not None and isinstance(width, int) and width < shape.channels:
            advice.append(f"components.{role}: its widest layer ({width}) is narrower than the latent channels "
                          f"{shape.channels}; the paper finds a DiT must be at least as wide as the tokens to fit them")
    return advice


def recipe_path(preset: Preset) -> Path:
    """The assembly file of a recipe preset (``params.path``), relative to the repository root."""
    relative = Path(str(preset.params.get("path", "")))
    catalog_file = Path(preset.source.rsplit(":", 1)[0])
    candidates = [relative, catalog_file.parent.parent / relative, Path.cwd() / relative]
    return next((candidate for candidate in candidates if candidate.is_file()), candidates[1])



def load_checkpoint_into(component: Any, path: str, where: str) -> None:
    """Load a safetensors state dict strictly into ``component``; a missing or mismatched file is a ConfigError."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ConfigError(f"{where}: {path} does not exist")
    if not hasattr(component, "load_state_dict"):
        raise ConfigError(f"{where}: {type(component).__name__} has no weights to load")
    try:
        state = load_file(path)
    except Exception as error:  # noqa: BLE001 - safetensors raises its own types for a cut or corrupted file
        raise ConfigError(f"{where}: {path} is not a readable safetensors file ({type(error).__name__}: "
                          f"{error})") from None
    try:
        component.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ConfigError(f"{where}: {path} does not fit {type(component).__name__}: {error}") from None
