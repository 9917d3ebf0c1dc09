"""Errors worded as iptables words them, with iptables' exit codes."""

from __future__ import annotations

OTHER_PROBLEM = 1
PARAMETER_PROBLEM = 2
RESOURCE_PROBLEM = 4


class PyfwError(Exception):
    """Base: `message` is the text after the program prefix."""

    exit_code = OTHER_PROBLEM

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class ParameterProblem(PyfwError):
    """xtables_error(PARAMETER_PROBLEM, ...): printed as
    `PROG v1.8.9 (legacy): MESSAGE` plus the try-help line; exit 2."""

    exit_code = PARAMETER_PROBLEM


class OtherProblem(PyfwError):
    """xtables_error(OTHER_PROBLEM, ...): same prefix, exit 1, no help line."""

    exit_code = OTHER_PROBLEM


class KernelError(PyfwError):
    """What the kernel (libiptc commit) refuses: printed as `PROG: TEXT.`.

    `message` is the strerror-like text iptables prints, e.g.
    "Invalid argument. Run `dmesg' for more information".
    """

    exit_code = OTHER_PROBLEM


# Texts libiptc prints for the errno values the kernel returns.
EINVAL = "Invalid argument. Run `dmesg' for more information"
ENOENT_RULE = "Bad rule (does a matching rule exist in that chain?)"
ENOENT_CHAIN = "No chain/target/match by that name"
EEXIST_CHAIN = "Chain already exists"
ELOOP = "Too many levels of symbolic links"
EMLINK = "Too many links"
EBUSY_CHAIN = "Directory not empty"
E2BIG_INDEX_DELETE = "Index of deletion too big"
E2BIG_INDEX_INSERT = "Index of insertion too big"
E2BIG_INDEX_REPLACE = "Index of replacement too big"
BAD_BUILTIN = "Bad built-in chain name"
NOT_BUILTIN = "Will be implemented real soon.  I promise ;)"
POLICY_ON_USER = BAD_BUILTIN
