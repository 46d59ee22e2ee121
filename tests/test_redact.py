"""The masking itself (:mod:`pulpinit.redact`): linear on adversarial values, exact where it imitates.

Its fast paths (percent-encoding and -decoding without a step per character, finding schemes
without backtracking) are checked against the standard library they stand in for; the no-scheme
``user:password@host`` form is masked everywhere a URL is; a value with more URLs than
:data:`~pulpinit.redact.MAX_URLS` is masked whole.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from helpers.adversarial import MIB, masking_ms, shapes
from hypothesis import given, settings
from hypothesis import strategies as st

from pulpinit import redact


@pytest.mark.parametrize("name", sorted(shapes(64)))
def test_a_1_mib_adversarial_value_is_masked_in_linear_time(name: str) -> None:
    """Measured in benchmarks/bench_masking.py (about 10-40 ms); quadratic masking took an hour."""
    value = shapes(MIB)[name]
    masking_ms(value)  # the regular expressions compiled, the first allocations made
    assert masking_ms(value) < 1000, name


def test_what_the_adversarial_values_show_is_masked() -> None:
    values = shapes(MIB)
    assert redact.display("x.broker_url", values["one URL of : and @"]) == "qpid://u:***@h/"
    assert redact.display("x.broker_url", values["many x://"]) == redact.MASK  # more than MAX_URLS: whole
    assert redact.is_secret("x.broker_url", values["many x://"])
    redactor = redact.Redactor(["s3cr3t!"])
    assert set(redactor(values["repeated secret"][:70])) == {"*"}
    for name, value in values.items():
        redactor = redact.Redactor()
        redactor.add_value(value, whole=True)
        assert redactor(f"x {value} y") == f"x {redact.MASK} y", name


TEXT = st.text(st.sampled_from("ab%:/@?# é\\\"'\t+~0F4\udcff"), max_size=24)


@settings(max_examples=500)
@given(TEXT)
def test_quote_and_unquote_are_the_standard_librarys(text: str) -> None:
    assert redact.quote(text) == urllib.parse.quote(text, safe="", errors="surrogateescape")
    assert redact.unquote(text) == urllib.parse.unquote(text)


SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@settings(max_examples=500)
@given(st.text(st.sampled_from("aZ1+.-:/ @"), max_size=40))
def test_url_starts_are_the_scheme_regex_matches(text: str) -> None:
    expected = [m.start() for m in SCHEME.finditer(text)]
    got = redact.url_starts(text)
    assert got == (None if text.count("://") > redact.MAX_URLS else expected)


def test_a_long_scheme_run_is_measured_whole() -> None:
    text = "1" * 100 + "a" * 100 + "://u:p@h"
    assert redact.url_starts(text) == [100]
    assert redact.mask_text(text) == "1" * 100 + "a" * 100 + "://u:***@h"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("pulp:PASSWORD@h:5672", "pulp:***@h:5672"),
        ("pulp:PASSWORD@h:5672/vhost", "pulp:***@h:5672/vhost"),
        ("pulp:PASS@WORD@h", "pulp:***@h"),  # kombu's rule: the last '@'
        ("SEK@usr:RET99@h", "SEK@usr:***@h"),
        ("pulp:pa/ss@h", "pulp:***@h"),  # unreadable: the whole userinfo after the user
        ("resource_manager@host", "resource_manager@host"),  # no password: no secret
        ("db:27017", "db:27017"),
    ],
)
def test_the_no_scheme_url_form_is_masked(value: str, shown: str) -> None:
    assert redact.display("x.broker_url", value) == shown
    assert redact.is_secret("x.broker_url", value) == (shown != value)
    assert redact.mask_text(f"--broker={value} -l INFO") == f"--broker={shown} -l INFO"
    if shown != value:
        secrets = redact.secrets_in(value, whole=False)
        assert secrets and all(s not in shown for s in secrets if len(s) >= redact.MIN_LENGTH)


def test_a_value_with_more_urls_than_the_limit_is_registered_and_shown_whole() -> None:
    value = " ".join(f"amqp://u{i}:pw{i}x@h//" for i in range(redact.MAX_URLS + 1))
    assert redact.display("pulpinit.args", value) == redact.MASK
    assert redact.secrets_in(value, whole=False) == [value]
    few = " ".join(f"amqp://u{i}:pw{i}x@h//" for i in range(3))
    assert {"pw0x", "pw1x", "pw2x"} <= set(redact.secrets_in(few, whole=False))


def test_long_secrets_keep_their_raw_and_escaped_forms() -> None:
    secret = 'a"b\\c' * 2000  # longer than MAX_ENCODED: no percent-encoded forms
    found = redact.forms(secret)
    assert {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]} <= found
    assert urllib.parse.quote(secret, safe="") not in found
    short = 'a"b\\c%'
    assert urllib.parse.quote(short, safe="").replace("%", "%%") in redact.forms(short)
