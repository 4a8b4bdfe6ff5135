"""Contract test classes, one per kind, parametrised over the registry's ``*-tiny`` presets.

Subclass one in a test module and pytest runs it on every matching registered component::

    from rae_framework.testing import EncoderContract

    class TestMyEncoders(EncoderContract):
        component_name = "patch-mean"   # optional: only this component (default: every encoder)
        preset_name = None              # optional: this preset (default: each of its "-tiny" presets)

or ``TestPatchMean = contract_tests_for("encoder", "patch-mean")``. ``--rae-contract-plugin NAME``
restricts every contract class to the components of one plugin. Each case builds the component from
its preset, on CPU, and checks the interface of its kind, shapes, dtypes, determinism in eval mode,
gradient flow for trainable modules and the Config rules (frozen, ``extra="forbid"``, every field
described, JSON round trip, torch-free module).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from pydantic import BaseModel, ValidationError

from rae_framework.config import ComponentConfig
from rae_framework.registry import Entry, Provenance, did_you_mean, import_reference
from rae_framework.session import Session
from rae_framework.testing.doubles import LinearSchedule, LinearScheduleConfig, TinyDenoiser, TinyDenoiserConfig

SESSION_KEY = pytest.StashKey[Session]()
TORCH_FREE_KEY = pytest.StashKey[dict]()
PLUGIN_OPTION = "rae_contract_plugin"


@dataclass(frozen=True)
class ContractCase:
    """One component built from one preset."""

    kind: str
    name: str
    preset: str | None
    provenance: Provenance

    @property
    def id(self) -> str:
        """Test id, e.g. ``dit-dh[dit-dh-tiny]``."""
        return f"{self.name}[{self.preset or 'defaults'}]"


def _matches(entry: Entry, plugins: list[str]) -> bool:
    return not plugins or bool({entry.provenance.plugin, entry.provenance.distribution} & set(plugins))


def contract_cases(session: Session, kind: str | None, *, component: str | None = None,
                   preset: str | None = None, plugins: list[str] = (),
                   exclude_kinds: tuple[str, ...] = ()) -> list[ContractCase]:
    """Cases for ``kind`` (None: every kind not in ``exclude_kinds``): each component's ``-tiny`` presets."""
    kinds = [kind] if kind is not None else [k for k in sorted(session.registry.kinds) if k not in exclude_kinds]
    cases = []
    for each_kind in kinds:
        if each_kind not in session.registry.kinds:
            continue
        for entry in session.registry.entries(each_kind):
            if (component and entry.name != component) or not _matches(entry, list(plugins)):
                continue
            names = [preset] if preset else [p.name for p in session.presets.all(each_kind)
                                             if p.component == entry.name and p.name.endswith("-tiny")]
            cases.extend(ContractCase(each_kind, entry.name, name, entry.provenance) for name in names)
    return cases


def no_case_problem(session: Session, kind: str | None, component: str | None, plugins: list[str]) -> str | None:
    """Why a contract class that names a kind or a component got no case (None: nothing was asked for)."""
    if kind is not None and kind not in session.registry.kinds:
        return f"unknown kind '{kind}'.{did_you_mean(kind, sorted(session.registry.kinds))}"
    if component is None:
        return None
    if not session.registry.contains(kind, component):
        names = session.registry.names(kind)
        return f"no {kind} '{component}' is registered.{did_you_mean(component, names)} Registered: {', '.join(names)}"
    if plugins and not _matches(session.registry.get(kind, component), plugins):
        return f"{kind} '{component}' is not provided by --rae-contract-plugin {', '.join(plugins)}"
    return (f"{kind} '{component}' has no '-tiny' preset; add one (e.g. '{component}-tiny' in a presets file "
            "returned by the rae_preset_paths hook) or set preset_name")


def unknown_plugins(session: Session, plugins: list[str]) -> str | None:
    """``--rae-contract-plugin`` names that no loaded plugin answers to, each with why (failed, or unknown)."""
    reports = session.plugin_manager.reports
    loaded = {name for report in reports if report.status == "loaded"
              for name in (report.name, report.provenance.distribution) if name}
    problems = []
    for name in (name for name in plugins if name not in loaded):
        report = next((r for r in reports if name in (r.name, r.provenance.distribution)), None)
        problems.append(f"plugin '{name}' is {report.status}" + (f": {report.error}" if report.error else "")
                        if report is not None else f"no plugin '{name}' (plugins: "
                                                   f"{', '.join(sorted(r.name for r in reports))})")
    return "; ".join(problems) or None


def contract_session(config: pytest.Config) -> Session:
    """One :class:`Session` per pytest run, shared by all contract classes."""
    if SESSION_KEY not in config.stash:
        config.stash[SESSION_KEY] = Session()
    return config.stash[SESSION_KEY]


def undescribed_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Fields (nested models included) without a description."""
    missing = []
    for name, field in model.model_fields.items():
        if not (field.description or "").strip():
            missing.append(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            missing.extend(undescribed_fields(field.annotation, f"{prefix}{name}."))
    return missing


_IMPORT_PROBE = """\
import importlib, json, sys
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except Exception as error:
        print(json.dumps([module, f"import failed: {type(error).__name__}: {error}"]))
        continue
    print(json.dumps([module, "imports torch" if "torch" in sys.modules else ""]))
    if "torch" in sys.modules:
        break
"""


def torch_free_verdicts(modules: list[str]) -> dict[str, str]:
    """``module -> ""`` if importing it (in a fresh interpreter) leaves torch unimported, else the reason.

    One interpreter imports the modules in turn until one pulls torch in; the rest get a fresh one.
    """
    verdicts: dict[str, str] = {}
    while remaining := [module for module in dict.fromkeys(modules) if module not in verdicts]:
        result = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, *remaining], capture_output=True, text=True,
                                timeout=300)
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("[")]
        if not lines:
            return {**verdicts, **{module: f"probe failed: {result.stderr[-300:]}" for module in remaining}}
        verdicts.update(dict(lines))
    return verdicts


class ComponentContract:
    """Checks every component of any kind satisfies (the Config rules, building, the kind's interface)."""

    kind: ClassVar[str | None] = None  # None: every kind that no other contract class covers
    component_name: ClassVar[str | None] = None
    preset_name: ClassVar[str | None] = None
    exclude_kinds: ClassVar[tuple[str, ...]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrise ``contract_case`` over the registry."""
        if "contract_case" not in metafunc.fixturenames:
            return
        session = contract_session(metafunc.config)
        plugins = metafunc.config.getoption(PLUGIN_OPTION, default=[])
        cases = contract_cases(session, self.kind, component=self.component_name, preset=self.preset_name,
                               plugins=plugins, exclude_kinds=self.exclude_kinds)
        problem = no_case_problem(session, self.kind, self.component_name, plugins) if not cases else None
        if problem is None:
            problem = unknown_plugins(session, plugins)
        if problem is not None:  # a typo must not pass as "N skipped"
            pytest.fail(f"no contract case collected: {problem}", pytrace=False)
        metafunc.parametrize("contract_case", cases, ids=[case.id for case in cases])

    @pytest.fixture
    def session(self, request: pytest.FixtureRequest) -> Session:
        """The shared session."""
        return contract_session(request.config)

    @pytest.fixture
    def entry(self, session: Session, contract_case: ContractCase) -> Entry:
        """The registry entry under test."""
        return session.registry.get(contract_case.kind, contract_case.name)

    @pytest.fixture
    def config(self, session: Session, contract_case: ContractCase) -> ComponentConfig:
        """The validated Config of the case's preset."""
        return session.make_config(contract_case.kind, contract_case.name, preset=contract_case.preset)

    @pytest.fixture
    def component(self, session: Session, entry: Entry, config: ComponentConfig) -> Any:
        """The component, built with a fixed seed, in eval mode if it is a module."""
        torch.manual_seed(0)
        built = session.build_from_config(entry, config)
        return built.eval() if isinstance(built, torch.nn.Module) else built

    def test_config_is_frozen_strict_and_described(self, entry: Entry) -> None:
        model = entry.load_config_model()
        assert issubclass(model, ComponentConfig), f"{model.__name__} must subclass ComponentConfig"
        assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen") is True
        assert undescribed_fields(model) == [], "every field needs Field(..., description=...)"

    def test_config_rejects_unknown_keys_and_mutation(self, config: ComponentConfig) -> None:
        with pytest.raises(ValidationError):
            type(config).model_validate({**config.model_dump(), "surely_not_a_parameter": 1})
        fields = list(type(config).model_fields)
        if fields:
            with pytest.raises(ValidationError):
                setattr(config, fields[0], getattr(config, fields[0]))

    def test_config_round_trips_through_json(self, config: ComponentConfig) -> None:
        assert type(config).model_validate_json(config.model_dump_json()) == config

    def test_config_module_is_torch_free(self, entry: Entry, request: pytest.FixtureRequest) -> None:
        module = entry.config.partition(":")[0]
        if TORCH_FREE_KEY not in request.config.stash:  # one probe for every config module of the session
            modules = [each.config.partition(":")[0] for each in contract_session(request.config).registry.entries()]
            request.config.stash[TORCH_FREE_KEY] = torch_free_verdicts([module, *modules])
        verdicts = request.config.stash[TORCH_FREE_KEY]
        assert verdicts[module] == "", f"config module {module}: {verdicts[module]} (listing/validating must not)"

    def test_component_implements_its_kind(self, session: Session, entry: Entry, config: ComponentConfig,
                                           component: Any) -> None:
        interface = import_reference(session.registry.kinds[entry.kind])
        assert isinstance(component, interface), f"{type(component).__name__} must implement {interface.__name__}"
        assert isinstance(config, type(component).Config)
        assert component.config == config


def _trainable(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def assert_gradients_flow(module: torch.nn.Module, output: torch.Tensor) -> None:
    """Every trainable parameter is reached by ``output`` and some gradient is non-zero.

    The loss is a fixed random projection of the output, so zero-initialised last layers (adaLN-Zero)
    still receive a gradient.
    """
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(0))
    (output.float() * weights).sum().backward()
    trainable = _trainable(module)
    assert trainable, "a trainable module needs trainable parameters"
    unused = [name for name, p in trainable if p.grad is None]
    assert unused == [], f"parameters not reached by the output (unused?): {unused[:8]}"
    assert any(p.grad.abs().sum() > 0 for _, p in trainable), "all gradients are zero"


def assert_deterministic(call: Any) -> torch.Tensor:
    """Two calls give identical finite outputs; returns the output."""
    with torch.no_grad():
        first, second = call(), call()
    assert torch.equal(first, second), "two identical calls differ in eval mode"
    assert torch.isfinite(first).all(), "non-finite output"
    return first


def _image_size(config: ComponentConfig, default: int = 32) -> int:
    size = getattr(config, "input_size", None) or getattr(config, "image_size", None)
    return size if isinstance(size, int) else default


def _images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))  # (B, 3, H, W)


class EncoderContract(ComponentContract):
    """Frozen encoders: normalised pixels -> ``(B, prefix + N, C)`` tokens."""

    kind = "encoder"

    def test_attributes_match_config(self, component: Any, config: ComponentConfig) -> None:
        assert len(component.image_mean) == 3 and len(component.image_std) == 3
        assert component.num_prefix_tokens >= 0 and component.input_size % component.patch_size == 0
        assert config.token_dim == component.token_dim, "Config.token_dim must equal the encoder's token_dim"
        assert config.grid_size == component.input_size // component.patch_size

    def test_forward_shape_dtype_determinism(self, component: Any) -> None:
        pixels = torch.randn(2, 3, component.input_size, component.input_size)  # (B, 3, S, S)
        tokens = assert_deterministic(lambda: component(pixels))
        expected = (2, component.num_prefix_tokens + component.num_tokens, component.token_dim)
        assert tuple(tokens.shape) == expected and tokens.dtype == torch.float32

    def test_is_frozen(self, component: Any) -> None:
        assert _trainable(component) == [], "encoders are frozen: no parameter may require grad"


class DecoderContract(ComponentContract):
    """Decoders: ``(B, N, C)`` tokens -> ``(B, out, p sqrt(N), p sqrt(N))`` pixels."""

    kind = "decoder"

    @staticmethod
    def _tokens(component: Any, config: ComponentConfig) -> torch.Tensor:
        count = getattr(config, "num_patches", None) or 16
        return torch.randn(2, count, component.token_dim, generator=torch.Generator().manual_seed(0))

    def test_forward_shape_and_determinism(self, component: Any, config: ComponentConfig) -> None:
        tokens = self._tokens(component, config)  # (B, N, C)
        images = assert_deterministic(lambda: component(tokens))
        side = component.patch_size * math.isqrt(tokens.shape[1])
        assert tuple(images.shape) == (2, component.out_channels, side, side) and images.dtype == torch.float32

    def test_gradients_flow(self, component: Any, config: ComponentConfig) -> None:
        component.train()
        assert isinstance(component.last_layer_weight, torch.Tensor) and component.last_layer_weight.requires_grad
        assert_gradients_flow(component, component(self._tokens(component, config)))


class DenoiserContract(ComponentContract):
    """Denoisers: ``(x, t, y)`` -> velocity of the shape of ``x``."""

    kind = "denoiser"

    @staticmethod
    def _inputs(component: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(3, component.in_channels, component.input_size, component.input_size, generator=generator)
        t = torch.tensor([0.0, 0.5, 1.0])  # (B,)
        if getattr(component, "text_dim", None) or getattr(component, "pooled_dim", None):
            return x, t, _text_condition(component, generator)
        y = torch.tensor([0, component.num_classes - 1, 0], dtype=torch.int64)  # (B,)
        return x, t, y

    def test_forward_shape_and_determinism(self, component: Any) -> None:
        x, t, y = self._inputs(component)
        velocity = assert_deterministic(lambda: component(x, t, y))
        assert velocity.shape == x.shape and velocity.dtype == torch.float32

    def test_gradients_flow(self, component: Any) -> None:
        component.train()
        torch.manual_seed(0)
        assert_gradients_flow(component, component(*self._inputs(component)))


def _text_condition(denoiser: Any, generator: torch.Generator) -> Any:
    """A random text Conditioning of 3 rows for a text-conditioned denoiser: 5 tokens with one padded row and
    one null row."""
    from rae_framework.conditioning import Conditioning

    text_dim, pooled_dim = getattr(denoiser, "text_dim", None), getattr(denoiser, "pooled_dim", None)
    tokens = torch.randn(3, 5, text_dim, generator=generator) if text_dim else None
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [True] * 5]) if text_dim else None
    pooled = torch.randn(3, pooled_dim, generator=generator) if pooled_dim else None
    return Conditioning(pooled=pooled, tokens=tokens, mask=mask, null=torch.tensor([False, False, True]))


class ConditionerContract(ComponentContract):
    """Conditioners: a batch of conditions -> a Conditioning of that many rows with the declared widths; a null
    condition flagged null that concatenates with it; frozen (no trainable parameters); deterministic."""

    kind = "conditioner"

    @staticmethod
    def _conditions(component: Any) -> list[Any]:
        if component.input_kind == "text":
            return ["a seven", "", "a much longer prompt about the digit nine in red ink"]
        return [0, int(getattr(component, "num_classes", 1)) - 1, 0]

    def test_encode_widths_and_determinism(self, component: Any) -> None:
        assert component.input_kind in ("labels", "text"), "input_kind is 'labels' or 'text'"
        first, second = component.encode(self._conditions(component)), component.encode(self._conditions(component))
        assert len(first) == 3
        for name in ("labels", "pooled", "tokens", "mask"):
            mine, again = getattr(first, name), getattr(second, name)
            assert (mine is None) == (again is None) and (mine is None or torch.equal(mine, again)), name
        if component.pooled_dim is not None:
            assert first.pooled is not None and first.pooled.shape == (3, component.pooled_dim)
        if component.token_dim is not None:
            assert first.tokens.shape[0] == 3 and first.tokens.shape[2] == component.token_dim
            assert first.mask.dtype == torch.bool and first.mask.shape == first.tokens.shape[:2]
        if component.input_kind == "labels":
            assert first.labels is not None and first.labels.dtype == torch.int64

    def test_config_declares_the_widths(self, component: Any, config: ComponentConfig) -> None:
        assert getattr(config, "pooled_dim", None) == component.pooled_dim, "Config.pooled_dim = the built one's"
        assert getattr(config, "token_dim", None) == component.token_dim, "Config.token_dim = the built one's"

    def test_null_condition(self, component: Any) -> None:
        null = component.null(2)
        assert len(null) == 2 and null.null is not None and bool(null.null.all()), "every null row is flagged"
        both = component.encode(self._conditions(component)).cat(null)
        assert len(both) == 5 and both.null.tolist() == [False, False, False, True, True]

    def test_is_frozen(self, component: Any) -> None:
        assert _trainable(component) == [], "a conditioner is frozen (a learned null lives in the denoiser)"


class ScheduleContract(ComponentContract):
    """Noise schedules: training times, the path, the velocity target, the sampling grid, the loss."""

    kind = "schedule"

    def test_training_times(self, component: Any) -> None:
        draw = lambda: component.sample_time(64, generator=torch.Generator().manual_seed(0))  # noqa: E731
        times = draw()
        assert times.shape == (64,) and torch.equal(times, draw())
        assert times.min() >= 0 and times.max() <= 1

    def test_path_endpoints_and_target(self, component: Any) -> None:
        x, noise = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
        torch.testing.assert_close(component.interpolate(x, noise, torch.zeros(2)), x)
        torch.testing.assert_close(component.interpolate(x, noise, torch.ones(2)), noise)
        assert component.velocity_target(x, noise).shape == x.shape

    def test_sampling_grid(self, component: Any) -> None:
        grid = component.sampling_grid(6)
        assert grid.shape == (6,) and grid.dtype == torch.float32
        assert (grid[1:] < grid[:-1]).all(), "the grid decreases from noise towards data"
        assert grid.min() >= 0 and grid.max() <= 1 + 1e-5

    def test_training_loss(self, component: Any) -> None:
        denoiser = TinyDenoiser(TinyDenoiserConfig())
        x, y = torch.randn(4, 4, 4, 4), torch.tensor([0, 1, 2, 0])
        loss = component.training_loss(denoiser, x, y, generator=torch.Generator().manual_seed(0))
        assert loss.shape == (4,) and torch.isfinite(loss).all() and (loss >= 0).all()
        assert component.loss_weight(torch.rand(4)).shape == (4,)


def _delta_velocity(target: torch.Tensor) -> Any:
    """Exact velocity of the linear path when all data sits at ``target``: ``(x - target) / t``."""
    return lambda x, t: (x - target) / t.clamp_min(1e-4).view(-1, 1, 1, 1)


class SamplerContract(ComponentContract):
    """Samplers: integrate a velocity field from noise towards data on a schedule's grid."""

    kind = "sampler"

    def _sample(self, component: Any, **options: Any) -> tuple[Any, torch.Tensor, torch.Tensor]:
        target = torch.full((2, 4, 3, 3), 0.5)
        noise = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))  # (B, C, h, w)
        schedule = LinearSchedule(LinearScheduleConfig())
        result = component.sample(_delta_velocity(target), noise, schedule,
                                  generator=torch.Generator().manual_seed(2), **options)
        return result, noise, target

    def test_converges_towards_the_data(self, component: Any) -> None:
        result, noise, target = self._sample(component)
        assert result.samples.shape == noise.shape and torch.isfinite(result.samples).all()
        assert result.num_function_evals >= 1
        assert (result.samples - target).abs().mean() < (noise - target).abs().mean()

    def test_deterministic_for_a_seeded_generator(self, component: Any) -> None:
        assert torch.equal(self._sample(component)[0].samples, self._sample(component)[0].samples)

    def test_trajectory(self, component: Any) -> None:
        result, noise, _ = self._sample(component, return_trajectory=True)
        assert result.trajectory is not None and result.trajectory.shape[1:] == noise.shape
        torch.testing.assert_close(result.trajectory[-1], result.samples)


class DiscriminatorContract(ComponentContract):
    """Discriminators: images -> logits; gradients reach the images and the trainable heads."""

    kind = "discriminator"

    def test_logits_and_determinism(self, component: Any, config: ComponentConfig) -> None:
        images = _images(2, _image_size(config))
        logits = assert_deterministic(lambda: component(images))
        assert logits.shape[0] == 2

    def test_gradients_reach_images_and_heads(self, component: Any, config: ComponentConfig) -> None:
        images = _images(2, _image_size(config)).requires_grad_(True)
        component.train()
        assert_gradients_flow(component, component(images))
        assert images.grad is not None and images.grad.abs().sum() > 0, "the generator loss needs input gradients"


class GuidanceContract(ComponentContract):
    """Guidance: a velocity field from a denoiser (and a guide); label-blind denoisers are left unchanged."""

    kind = "guidance"

    def test_velocity_field(self, component: Any) -> None:
        denoiser = TinyDenoiser(TinyDenoiserConfig()).eval()
        labels = torch.tensor([0, 2, 1])
        guide = TinyDenoiser(TinyDenoiserConfig()).eval()
        velocity = component.velocity(denoiser, labels, guide=guide if component.needs_guide else None)
        x, t = torch.randn(3, 4, 4, 4), torch.tensor([0.1, 0.5, 0.9])
        out = assert_deterministic(lambda: velocity(x, t))
        assert out.shape == x.shape

    def test_label_blind_denoiser_is_unchanged(self, component: Any) -> None:
        denoiser = TinyDenoiser(TinyDenoiserConfig(use_labels=False)).eval()
        labels = torch.tensor([0, 2, 1])
        velocity = component.velocity(denoiser, labels, guide=denoiser if component.needs_guide else None)
        x, t = torch.randn(3, 4, 4, 4), torch.tensor([0.1, 0.5, 0.9])
        with torch.no_grad():
            torch.testing.assert_close(velocity(x, t), denoiser(x, t, labels), rtol=1e-5, atol=1e-5)


class MetricContract(ComponentContract):
    """Metrics: update over batches, compute a dict of finite floats, reset forgets."""

    kind = "metric"

    @staticmethod
    def _update(component: Any, size: int, seed: int) -> None:
        """One batch; metrics that declare ``needs_labels`` (class accuracy) also get the samples' labels."""
        labels = {"labels": torch.arange(4) + seed} if getattr(component, "needs_labels", False) else {}
        component.update(generated=_images(4, size, seed), reference=_images(4, size, seed + 10), **labels)

    def _measure(self, component: Any, size: int) -> dict[str, float]:
        component.reset()
        for seed in (0, 1):
            self._update(component, size, seed)
        return component.compute()

    def test_compute_after_updates_and_reset(self, component: Any, config: ComponentConfig) -> None:
        size = _image_size(config)
        values = self._measure(component, size)
        assert values and all(isinstance(k, str) and isinstance(v, float) for k, v in values.items())
        assert all(math.isfinite(v) for v in values.values()), values
        assert self._measure(component, size) == values, "reset() must forget the earlier batches"

    def test_declares_pairing_and_mergeable_state(self, component: Any, config: ComponentConfig) -> None:
        """``paired`` is a bool; two ranks' states, reduced as ``state_reductions`` says, give one pass's value."""
        assert isinstance(component.paired, bool), "Metric.paired must be declared as a bool"
        assert set(component.state_reductions.values()) <= {"sum", "cat"}, component.state_reductions
        size = _image_size(config)
        whole = self._measure(component, size)
        states = []
        for seed in (0, 1):  # one batch per "rank", as _measure feeds them
            component.reset()
            self._update(component, size, seed)
            states.append(component.state_tensors())
        assert set(states[0]) == set(component.state_reductions), "state_tensors() must name every reduction"
        merged = {name: states[0][name] + states[1][name] if how == "sum" else torch.cat([states[0][name],
                                                                                          states[1][name]])
                  for name, how in component.state_reductions.items()}
        component.reset()
        component.load_state_tensors(merged)
        assert component.compute() == pytest.approx(whole, rel=1e-6, abs=1e-9)


class PerceptualContract(ComponentContract):
    """Perceptual losses: per-sample distances, zero for identical images, gradients to the images."""

    kind = "perceptual"

    def test_distance(self, component: Any, config: ComponentConfig) -> None:
        images, targets = _images(2, _image_size(config, 64), 0), _images(2, _image_size(config, 64), 1)
        distance = assert_deterministic(lambda: component(images, targets))
        assert distance.shape == (2,) and (distance >= 0).all()
        with torch.no_grad():
            torch.testing.assert_close(component(images, images), torch.zeros(2), atol=1e-5, rtol=0)

    def test_frozen_with_gradients_to_images(self, component: Any, config: ComponentConfig) -> None:
        images = _images(2, _image_size(config, 64), 0).requires_grad_(True)
        component(images, _images(2, _image_size(config, 64), 1)).sum().backward()
        assert _trainable(component) == [], "perceptual networks are frozen"
        assert images.grad is not None and images.grad.abs().sum() > 0


class StageContract(ComponentContract):
    """Stages (kind ``stage``): a sound spec on the Config, a class implementing ``Stage.run``, and defaults that
    validate. Running a stage needs a run; a plugin tests that end to end (see examples/third_party_stage)."""

    kind = "stage"

    def test_spec_is_sound(self, session: Session, config: ComponentConfig) -> None:
        from rae_framework.stage import StageConfig, StageSpec

        assert isinstance(config, StageConfig), "a stage's Config subclasses rae_framework.stage.StageConfig"
        spec = type(config).spec
        assert isinstance(spec, StageSpec) and isinstance(spec.order, int), "Config.spec must be a StageSpec"
        paths = list(spec.outputs.values())
        assert len(set(paths)) == len(paths), "two outputs share a path"
        assert all(not Path(path).is_absolute() and ".." not in Path(path).parts for path in paths), \
            "outputs are paths relative to the run directory"
        for upstream in spec.reads:
            other = session.registry.get("stage", upstream).load_config_model().spec
            assert other.order < spec.order, f"'{upstream}' must run before the stages that read it"

    def test_defaults_validate(self, config: ComponentConfig) -> None:
        assert type(config).model_validate({}).enabled is True, "every stage setting needs a default"


class TrackerContract(ComponentContract):
    """Trackers (kind ``tracker``): a whole run (config, scalars, an image, ``metrics.json``, finish) logged into
    a temporary run directory with nothing written into the working directory, a JSON-ready state, and a
    resumed start that continues the same tracker run. Run offline: ``WANDB_MODE=offline``, no
    ``MLFLOW_TRACKING_URI``; a tracker that needs a server is tested against a local one by its own tests."""

    kind = "tracker"

    @pytest.fixture
    def run_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        """An empty run directory; the working directory is another empty folder beside it."""
        monkeypatch.setenv("WANDB_MODE", "offline")
        monkeypatch.setenv("WANDB_SILENT", "true")
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        (tmp_path / "cwd").mkdir()
        monkeypatch.chdir(tmp_path / "cwd")
        return tmp_path / "run"

    @staticmethod
    def _log_a_run(component: Any, run_dir: Path, previous: dict | None = None, first_step: int = 0) -> dict:
        from rae_framework.tracker import TrackerRun

        run_dir.mkdir(parents=True, exist_ok=True)
        state = component.start(TrackerRun(run_dir, "contract", {"name": "contract", "seed": 0,
                                                                 "stages": {"sample": {"per_class": 1}}}, previous))
        assert isinstance(state, dict), "start returns the state (a dict) that continues this run"
        try:
            text = json.dumps(state)
        except (TypeError, ValueError) as error:
            raise AssertionError(f"the state is kept in trackers.json: JSON values only ({error})") from None
        assert json.loads(text) == state, "the state is kept in trackers.json: JSON values only"
        for step in (first_step, first_step + 1):
            component.log_scalars(step, {"train/loss": 1.0 / (step + 1), "train/lr": 1e-4})
        component.log_image("sample/grid", first_step, _grid_image())
        (run_dir / "metrics.json").write_text(json.dumps({"psnr": 10.0}))
        component.log_metrics({"psnr": 10.0}, run_dir / "metrics.json")
        return state

    def test_logs_a_whole_run_inside_the_run_directory(self, component: Any, run_dir: Path) -> None:
        self._log_a_run(component, run_dir)
        component.finish("finished")
        strays = sorted(path.name for path in Path.cwd().iterdir())
        assert strays == [], f"a tracker writes below the run directory, not the working directory: {strays}"

    def test_a_resumed_start_continues_the_same_run(self, component: Any, run_dir: Path) -> None:
        first = self._log_a_run(component, run_dir)
        component.finish("killed")
        resumed = type(component)(component.config)
        second = self._log_a_run(resumed, run_dir, previous=first, first_step=2)
        resumed.finish("finished")
        assert second == first, "handed its previous state, a tracker continues that run (same id)"


def _grid_image() -> Any:
    """A small ``(H, W, 3)`` uint8 picture, as a sample grid is."""
    return (torch.arange(8 * 16 * 3) % 256).to(torch.uint8).reshape(8, 16, 3).numpy()


KIND_CONTRACTS: dict[str, type[ComponentContract]] = {
    contract.kind: contract for contract in (EncoderContract, DecoderContract, DenoiserContract, ScheduleContract,
                                             SamplerContract, DiscriminatorContract, GuidanceContract,
                                             MetricContract, PerceptualContract, StageContract, TrackerContract,
                                             ConditionerContract)
}


class OtherKindsContract(ComponentContract):
    """The general contract for kinds that plugins add (e.g. ``feature_extractor``)."""

    exclude_kinds = tuple(KIND_CONTRACTS)


def contract_tests_for(kind: str, name: str | None = None, preset: str | None = None) -> type:
    """A contract test class for one kind (and optionally one component/preset), to assign to ``Test...``."""
    base = KIND_CONTRACTS.get(kind, ComponentContract)
    title = "".join(part.capitalize() for part in f"{kind}-{name or 'all'}".replace("_", "-").split("-"))
    return type(f"Test{title}Contract", (base,), {"kind": kind, "component_name": name,
                                                  "preset_name": preset})
