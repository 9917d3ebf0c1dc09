"""Splitting a rule line into words as iptables-restore's add_param_to_argv
does, and the `[pkts:bytes]` counters prefix."""

from __future__ import annotations

from pyfw.errors import ParameterProblem

_SEPARATORS = " \t\n"


def split_words(line: str) -> list[str]:
    """Words of a line.  A double quote opens a group that a backslash can
    escape within; the closing quote ends the word (even an empty one);
    outside quotes, space, tab and newline separate words."""
    if '"' not in line:
        if "\r" in line or "\v" in line or "\f" in line:
            return [w for w in line.replace("\t", " ").replace("\n", " ").split(" ") if w]
        return line.split()
    words: list[str] = []
    buf: list[str] = []
    quote_open = False
    escaped = False
    for ch in line:
        if quote_open:
            if escaped:
                buf.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quote_open = False
                words.append("".join(buf))
                buf = []
            else:
                buf.append(ch)
        elif ch == '"':
            quote_open = True
        elif ch in _SEPARATORS:
            if buf:
                words.append("".join(buf))
                buf = []
        else:
            buf.append(ch)
    if buf:
        words.append("".join(buf))
    return words


def split_counters(line: str, lineno: int) -> tuple[str | None, str | None, str]:
    """tokenize_rule_counters: ("pkts", "bytes", rest) when the line starts
    with `[`, else (None, None, line)."""
    if not line.startswith("["):
        return None, None, line
    end = line.find("]")
    if end < 0:
        raise ParameterProblem(f"Bad line {lineno}: need ]")
    inner = line[1:]
    # strtok(buffer+1, ":") then strtok(NULL, "]")
    stripped = inner.lstrip(":")
    if not stripped:
        raise ParameterProblem(f"Bad line {lineno}: need :")
    colon = stripped.find(":")
    if colon < 0:
        pcnt = stripped
        raise ParameterProblem(f"Bad line {lineno}: need ]")
    pcnt = stripped[:colon]
    rest = stripped[colon + 1:].lstrip("]")
    close = rest.find("]")
    if not rest:
        raise ParameterProblem(f"Bad line {lineno}: need ]")
    bcnt = rest[:close] if close >= 0 else rest
    return pcnt, bcnt, line[end + 1:]
