"""How the answers of several workers to one conntrack request join."""

from pyfw.daemon.ctworkers import merge

MISSING = {"error": "conntrack v1.4.7 (conntrack-tools): Operation failed: such conntrack doesn't exist\n", "rc": 1}


def test_get_found_at_one_worker_is_found() -> None:
    line = "tcp      6 100 ESTABLISHED src=1.2.3.4 ... use=2"
    assert merge([MISSING, {"lines": [line]}]) == {"lines": [line]}


def test_get_found_nowhere_is_the_error() -> None:
    assert merge([MISSING, MISSING]) == MISSING


def test_a_real_error_wins() -> None:
    bad = {"error": "pyfw daemon: bad conntrack request: x\n", "rc": 2}
    assert merge([{"lines": []}, bad]) == bad


def test_counts_add_and_lines_join() -> None:
    assert merge([{"count": 2}, {"count": 3}]) == {"count": 5}
    assert merge([{"lines": ["a"]}, {"lines": ["b"]}]) == {"lines": ["a", "b"]}
