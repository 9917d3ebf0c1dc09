"""comment: a note on a rule; always matches."""

from __future__ import annotations

from dataclasses import dataclass

from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp
from pyfw.ext.types import save_string

MAX_COMMENT_LEN = 256  # XT_MAX_COMMENT_LEN, including the terminating NUL


@dataclass
class CommentData:
    comment: str = ""


class Comment(Match):
    name = "comment"
    options = (Opt("comment", ArgType.STRING, mand=True, max=MAX_COMMENT_LEN - 1),)

    def new_data(self) -> CommentData:
        return CommentData()

    def parse(self, call: Call) -> None:
        call.data.comment = call.value

    def save(self, data: CommentData, ip: RuleIp) -> str:
        return " --comment" + save_string(data.comment)

    def print(self, data: CommentData, ip: RuleIp, numeric: bool) -> str:
        return f" /* {data.comment} */"

    # The engine's per-packet test (issue: packet engine) goes here as
    # `def matches(...)`; a comment always matches.


EXTENSIONS = [Comment()]
