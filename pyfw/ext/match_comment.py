"""comment: a note on a rule; always matches."""

from __future__ import annotations

from dataclasses import dataclass

from pyfw.engine.api import Env, MatchFn
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp
from pyfw.ext.types import save_string

MAX_COMMENT_LEN = 256  # XT_MAX_COMMENT_LEN, including the terminating NUL


@dataclass
class CommentData:
    comment: str = ""


class Comment(Match):
    name = "comment"
    # No length limit: like xtopt_parse_string, a longer comment is cut to
    # the buffer (255 bytes and the NUL), not refused.
    options = (Opt("comment", ArgType.STRING, mand=True),)

    def new_data(self) -> CommentData:
        return CommentData()

    def parse(self, call: Call) -> None:
        raw = call.value.encode("utf-8", "surrogateescape")[: MAX_COMMENT_LEN - 1]
        call.data.comment = raw.decode("utf-8", "surrogateescape")

    def save(self, data: CommentData, ip: RuleIp) -> str:
        return " --comment" + save_string(data.comment)

    def print(self, data: CommentData, ip: RuleIp, numeric: bool) -> str:
        return f" /* {data.comment} */"

    # The engine's per-packet test (issue: packet engine) goes here as
    # `def matches(...)`; a comment always matches.

    def compile(self, data: CommentData, env: Env) -> MatchFn:
        """comment_mt: always true."""
        return _always


def _always(pkt: object) -> bool:
    return True


EXTENSIONS = [Comment()]
