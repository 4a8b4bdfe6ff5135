"""Line-tracking safe YAML and --set overrides."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rae_framework.errors import ConfigError
from rae_framework.yaml_lines import apply_override, load_yaml_with_lines, parse_override

TEXT = """\
a: 1
b:
  c: [1, 2]
  d: &base {e: 1}
  f:
    <<: *base
    g:
      - x
      - {h: 2}
"""


def test_same_data_as_safe_load_and_lines_for_every_path():
    data, source = load_yaml_with_lines(TEXT, "f.yaml")
    assert data == yaml.safe_load(TEXT)
    assert source.lines[("b", "c")] == 3 and source.lines[("b", "f", "g", "1", "h")] == 9
    assert source.lines[("b", "f", "e")] == 4  # merged key: where it was written
    assert source.locate(("b", "f", "g", "1", "h", "deeper")) == "f.yaml:9"
    assert source.locate(("nowhere",)) == "f.yaml:1"


def test_overrides_take_precedence_in_locate():
    _, source = load_yaml_with_lines(TEXT, "f.yaml")
    source.overrides[("b", "c")] = "--set b.c=[3]"
    assert source.locate(("b", "c", "0")) == "--set b.c=[3]"


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_document(text):
    data, source = load_yaml_with_lines(text, "e.yaml")
    assert data is None and source.lines == {}


def test_unsafe_tags_and_syntax_errors_are_config_errors_with_lines():
    with pytest.raises(ConfigError, match=r"t.yaml:1: invalid YAML"):
        load_yaml_with_lines("a: !!python/name:os.system\n", "t.yaml")
    with pytest.raises(ConfigError, match=r"t.yaml:3: invalid YAML"):
        load_yaml_with_lines("a: 1\nb: 2\n c: 3\n", "t.yaml")


@pytest.mark.parametrize(("text", "expected"), [
    ("a.b=5", (("a", "b"), 5)), ("a=[1, 2]", (("a",), [1, 2])), ("a=null", (("a",), None)),
    ("a=abc", (("a",), "abc")), ("a=", (("a",), "")), ("a={x: 1}", (("a",), {"x": 1})), ("a=1e-3", (("a",), "1e-3")),
])
def test_parse_override_is_yaml_typed(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=1", "a..b=1", "a=[1"])
def test_bad_overrides(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(text)


def test_apply_override_copies_and_creates():
    document = {"a": {"b": 1}, "l": [{"x": 1}, 2]}
    updated = apply_override(document, ("a", "c", "d"), 3)
    assert updated == {"a": {"b": 1, "c": {"d": 3}}, "l": [{"x": 1}, 2]} and document["a"] == {"b": 1}
    assert apply_override(document, ("l", "0", "x"), 5)["l"] == [{"x": 5}, 2]
    with pytest.raises(ConfigError, match="inside a int"):
        apply_override(document, ("a", "b", "c"), 1)


KEYS = st.text(alphabet="abcxyz_", min_size=1, max_size=5)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text("abc 1.:-", max_size=6),
                    st.floats(allow_nan=False, allow_infinity=False))
DOCUMENTS = st.dictionaries(KEYS, st.recursive(SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=3)), max_leaves=12), max_size=4)


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, str(index))
            yield from _paths(child, (*prefix, str(index)))


@settings(max_examples=60, deadline=None)
@given(DOCUMENTS, st.booleans())
def test_any_document_parses_like_safe_load_with_a_line_for_every_path(document, flow):
    text = yaml.safe_dump(document, default_flow_style=flow)
    data, source = load_yaml_with_lines(text, "p.yaml")
    assert data == yaml.safe_load(text)
    assert all(path in source.lines for path in _paths(data))
    assert all(1 <= line <= text.count("\n") + 1 for line in source.lines.values())


def test_duplicate_keys_are_errors_at_the_second_line():
    text = "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 4\n"
    with pytest.raises(ConfigError) as caught:
        load_yaml_with_lines(text, "d.yaml")
    message = str(caught.value)
    assert "d.yaml:5: b.c: duplicate key (first written at line 3)" in message
    assert "d.yaml:6: a: duplicate key (first written at line 1)" in message


def test_a_key_may_override_a_merged_one():
    data, _ = load_yaml_with_lines("base: &b {x: 1, y: 2}\nitem:\n  <<: *b\n  x: 3\n", "m.yaml")
    assert data["item"] == {"x": 3, "y": 2}


def test_tab_indentation_gets_a_hint():
    with pytest.raises(ConfigError, match=r"t.yaml:2: invalid YAML: .*use spaces"):
        load_yaml_with_lines("a:\n\tb: 1\n", "t.yaml")


def test_alias_expansion_is_bounded():
    text = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]\n" for prev, name in zip("abcdefg", "bcdefgh"))
    with pytest.raises(ConfigError, match=r"b.yaml:1: invalid YAML: the document expands to \d+ values"):
        load_yaml_with_lines(text, "b.yaml")
