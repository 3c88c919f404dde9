"""formats: each file format's escaping, against the format's own documentation."""

import json

import pytest

from provision import formats


def test_systemd_specifiers_and_variables_are_doubled():
    # systemd.unit(5): "%%" is a single "%"; systemd.service(5): "$$" is a literal "$".
    assert formats.systemd_path("/srv/100%") == "/srv/100%%"
    assert formats.systemd_arg('/a b/$HOME/"x"\\') == '"/a b/$$HOME/\\"x\\"\\\\"'


@pytest.mark.parametrize("bad", ["/a\nb", "/a\\nb", " /a", "/a\x01"])
def test_systemd_path_refuses_what_a_unit_cannot_hold(bad):
    with pytest.raises(formats.FormatError):
        formats.systemd_path(bad)


def test_yaml_str_is_a_double_quoted_scalar():
    assert json.loads(formats.yaml_str("yes: # no")) == "yes: # no"
    with pytest.raises(formats.FormatError):
        formats.yaml_str("a\nb")


@pytest.mark.parametrize("bad", ["a b", "", "x#y", "a\nb", "'q'"])
def test_sshd_value_is_one_word(bad):
    with pytest.raises(formats.FormatError):
        formats.sshd_value(bad)
