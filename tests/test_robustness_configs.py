"""Experiment configs under fuzzing: a clear ValueError naming the file, or a config of the right shape."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentalign.experiments.runner import config_dir, list_experiments, load_config

_TOML_VALUES = st.sampled_from(
    ["5", "-1.5e300", '"text"', "true", "[]", "[1, 2]", '["a", 3]', "{}", "{ a = 1 }", "1979-05-27", "inf", "nan"]
)
_ASSIGNMENT = re.compile(r"^(\s*[A-Za-z_][\w-]*\s*=\s*)(.+)$")


def _packaged_text(name: str) -> str:
    return config_dir().joinpath(f"{name}.toml").read_text(encoding="utf-8")


def _check_loaded_or_refused(path) -> None:
    try:
        config = load_config(path, reduced=True)
    except (ValueError, FileNotFoundError) as exc:  # FileNotFoundError: 'extends' names no known config
        assert str(path) in str(exc)  # the message names the file
        return
    assert isinstance(config["runner"], str) and isinstance(config["title"], str)
    assert isinstance(config["paper"], dict) and isinstance(config["setup"], dict)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("setup = 5", "'setup' must be a table"),
        ('reduced = "x"', "'reduced' must be a table"),
        ("paper = [1]", "'paper' must be a table"),
        ("title = 3", "'title' must be a string, got int 3"),
        ("runner = []", "'runner' must be a string"),
    ],
)
def test_top_level_keys_of_the_wrong_type_are_named(tmp_path, line, message):
    key = line.split(" = ")[0]
    body = [
        'runner = "latentalign.experiments.mutual_knn:run"',
        'title = "t"',
        "[paper]\ncitation = 'c'",
        "[setup]\nn = 1",
        "[reduced]\nn = 2",
    ]
    kept = [b for b in body if not (b.startswith(f"{key} =") or b.startswith(f"[{key}]"))]
    top = [b for b in kept if not b.startswith("[")]
    path = tmp_path / "c.toml"
    path.write_text("\n".join([*top, line, *[b for b in kept if b.startswith("[")]]) + "\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(path)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_configs_load_or_give_a_clear_value_error(tmp_path_factory, data):
    name = data.draw(st.sampled_from(list_experiments()))
    lines = _packaged_text(name).splitlines()
    edits = data.draw(st.integers(1, 4))
    for _ in range(edits):
        action = data.draw(st.sampled_from(["value", "delete", "bytes"]))
        i = data.draw(st.integers(0, len(lines) - 1))
        if action == "value" and (m := _ASSIGNMENT.match(lines[i])):
            lines[i] = m.group(1) + data.draw(_TOML_VALUES)
        elif action == "delete":
            del lines[i]
            if not lines:
                lines = [""]
        else:
            noise = data.draw(st.text(max_size=6))
            lines[i] = lines[i][: len(lines[i]) // 2] + noise + lines[i][len(lines[i]) // 2 :]
    path = tmp_path_factory.mktemp("cfg") / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _check_loaded_or_refused(path)


def test_undecodable_bytes_are_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"runner = \xff\xfe\n")
    with pytest.raises(ValueError, match=r"c\.toml' is not valid TOML"):
        load_config(path)
