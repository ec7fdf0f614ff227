"""Go's text/template language over JSON-like values, the engine of `--format` (cli/template.py).

A lexer, a parser to a tree and an evaluator. Values are what JSON decodes to: dict, list,
str, int, float, bool and None (Go's nil: `<no value>` when an action prints it). Supported:

- text and actions `{{...}}`; trim markers `{{- ` and ` -}}`; comments `{{/* ... */}}`;
- operands: `.`, `.Field.Sub`, `$`, `$var.Field`, `(pipeline).Field`, "strings", `raw
  strings`, 'c' (a rune), numbers (`10`, `0x1F`, `1.5e3`), true, false, nil; pipelines with `|`;
- variables: `$x := pipeline` declares, `$x = pipeline` assigns; `$` is the data;
- `{{if}}` `{{else if}}` `{{else}}` `{{end}}`, `{{with}}` (and `{{else with}}`), `{{range}}`
  over lists, maps (keys sorted) and integers, with `$i, $e :=`, `{{else}}`, `{{break}}` and
  `{{continue}}`;
- Go's functions: and, or (the deciding value, short-circuit), not, eq (several), ne, lt, le,
  gt, ge, len, index, slice, print, printf, println, html, js, urlquery; docker's: json,
  join, split, upper, lower, title, pad, truncate.

As Go: len counts a string's bytes, index of a string gives a byte, a missing map key is
nil, printf writes a mismatch in its text (`%!d(string=x)`). Kinder than Go, as JSON's numbers
are one kind: eq, lt, ... compare an int with a float, printf's %d takes a whole float and
%f an int, and nil is an argument like any other (`eq .X nil`).

Not supported: define, template and block (a --format is one template), `call` (no value
here is a function), printf's `%[n]` argument indexes and complex numbers. A template that
runs too long, nests too deeply or prints too much stops with a TemplateError.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

MAX_OUTPUT = 4 << 20  # characters a template may print (or hold in one string)
MAX_STEPS = 1_000_000  # actions, commands and iterations one execution may take
MAX_WORK = 64 << 20  # characters one execution's function calls may take in and make
MAX_DEPTH = 100  # nesting of control structures and parentheses
SPACES = " \t\r\n"
KEYWORDS = frozenset({"block", "break", "continue", "define", "else", "end", "if", "range",
                      "template", "with"})


class TemplateError(Exception):
    """A template that cannot be parsed or executed; `hint`: what would help, if known."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# ---------------------------------------------------------------------------- lexer

@dataclass(frozen=True)
class Token:
    """kind: text, left, right, space, field, var, ident, keyword, string, number, bool,
    nil, dot, pipe, lparen, rparen, declare, assign, comma or eof."""

    kind: str
    text: str  # as written
    value: Any = None  # a literal's value, a field's name, a text's text


def _is_space(src: str, i: int) -> bool:
    return i < len(src) and src[i] in SPACES


def _is_alnum(c: str) -> bool:
    return c.isalnum() or c == "_"


def _at_terminator(src: str, i: int) -> bool:
    """Whether a field, variable or identifier may end before `i` (Go's atTerminator)."""
    return i >= len(src) or src[i] in SPACES + ".,|:()" or src.startswith("}}", i)


def _docker_escapes(text: str) -> str:
    return text.replace("\\t", "\t").replace("\\n", "\n")


def lex(src: str, *, docker_escapes: bool = False) -> list[Token]:
    """The tokens of `src`; docker_escapes: `\\t` and `\\n` in the text are a tab and a newline."""
    tokens: list[Token] = []
    pos, trim_next = 0, False
    while True:
        start = src.find("{{", pos)
        text = src[pos:] if start < 0 else src[pos:start]
        if docker_escapes:
            text = _docker_escapes(text)
        left_trim = start >= 0 and src.startswith("-", start + 2) and _is_space(src, start + 3)
        if trim_next:
            text = text.lstrip(SPACES)
        if left_trim:
            text = text.rstrip(SPACES)
        if text:
            tokens.append(Token("text", text, text))
        if start < 0:
            break
        pos = start + (4 if left_trim else 2)
        if src.startswith("/*", pos):
            pos, trim_next = _lex_comment(src, pos)
            continue
        tokens.append(Token("left", "{{"))
        pos, trim_next = _lex_action(src, pos, tokens)
    tokens.append(Token("eof", "end of template"))
    return tokens


def _lex_comment(src: str, pos: int) -> tuple[int, bool]:
    close = src.find("*/", pos + 2)
    if close < 0:
        raise TemplateError("a comment is not closed with */")
    pos = close + 2
    if src.startswith("}}", pos):
        return pos + 2, False
    if _is_space(src, pos) and src.startswith("-}}", pos + 1):
        return pos + 4, True
    raise TemplateError("a comment must end its action: {{/* ... */}}")


_NUMBER = re.compile(r"[+-]?(?:[0-9A-Za-z_.]|(?<=[eEpP])[+-])+")
_SINGLE = {"|": "pipe", "(": "lparen", ")": "rparen", "=": "assign", ",": "comma"}


def _lex_action(src: str, pos: int, tokens: list[Token]) -> tuple[int, bool]:
    """The tokens of the action at `pos` (just after its `{{`): where it ends, and whether
    it trims the text after it."""
    n, depth = len(src), 0
    while True:
        if pos >= n:
            raise TemplateError("an action is not closed with }}")
        right = 3 if _is_space(src, pos) and src.startswith("-}}", pos + 1) else 0
        if right or src.startswith("}}", pos):
            if depth:
                raise TemplateError("a ( is not closed with )")
            tokens.append(Token("right", "}}"))
            return pos + (right + 1 if right else 2), bool(right)
        c = src[pos]
        if c in SPACES:
            end = pos
            while end < n and src[end] in SPACES:
                end += 1
            if src.startswith("-}}", end):
                end -= 1  # (the space of a trim marker, which the next turn takes)
            tokens.append(Token("space", src[pos:end]))
            pos = end
            continue
        if c in "\"`'":
            end, value = _lex_quote(src, pos)
            kind = "number" if c == "'" else "string"
            tokens.append(Token(kind, src[pos:end], value))
        elif c == "$" or (c == "." and not src[pos + 1:pos + 2].isdigit()):
            end = pos + 1
            while end < n and _is_alnum(src[end]):
                end += 1
            if not _at_terminator(src, end):
                raise _bad_character(src, end)
            name = src[pos:end]
            if c == "$":
                tokens.append(Token("var", name, name))
            else:
                tokens.append(Token("field", name, name[1:]) if end > pos + 1 else Token("dot", "."))
        elif c in "+-." or c.isdigit():
            m = _NUMBER.match(src, pos)
            end = m.end() if m else pos + 1
            if not _at_terminator(src, end):
                raise _bad_character(src, end)
            tokens.append(Token("number", src[pos:end], _number(src[pos:end])))
        elif _is_alnum(c):
            end = pos
            while end < n and _is_alnum(src[end]):
                end += 1
            if not _at_terminator(src, end):
                raise _bad_character(src, end)
            word = src[pos:end]
            kind = ("keyword" if word in KEYWORDS else "bool" if word in ("true", "false")
                    else "nil" if word == "nil" else "ident")
            tokens.append(Token(kind, word, word == "true" if kind == "bool" else None))
        elif c == ":":
            if not src.startswith(":=", pos):
                raise TemplateError("expected := after :")
            end = pos + 2
            tokens.append(Token("declare", ":="))
        elif c in _SINGLE:
            depth += {"(": 1, ")": -1}.get(c, 0)
            if depth < 0:
                raise TemplateError("a ) has no ( before it")
            if depth > MAX_DEPTH:
                raise _too_deep()
            end = pos + 1
            tokens.append(Token(_SINGLE[c], c))
        else:
            raise _bad_character(src, pos)
        pos = end


def _bad_character(src: str, pos: int) -> TemplateError:
    if "}}" not in src[pos:]:
        return TemplateError("an action is not closed with }}")
    return TemplateError(f"unexpected {src[pos]!r} in an action")


def _too_deep() -> TemplateError:
    return TemplateError(f"the template nests more than {MAX_DEPTH} levels deep")


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\"}


def _lex_quote(src: str, pos: int) -> tuple[int, Any]:
    """A "string", a `raw string` or a 'rune' at `pos`: where it ends, and its value."""
    quote = src[pos]
    if quote == "`":
        end = src.find("`", pos + 1)
        if end < 0:
            raise TemplateError("a raw string is not closed with `")
        return end + 1, src[pos + 1:end]
    end = pos + 1
    while True:
        if end >= len(src) or src[end] == "\n":
            what = "string" if quote == '"' else "rune"
            raise TemplateError(f"a quoted {what} is not closed with {quote}")
        if src[end] == "\\":
            end += 2
        elif src[end] == quote:
            break
        else:
            end += 1
    value = _unquote(src[pos + 1:end], quote)
    if quote == '"':
        return end + 1, value
    if len(value) != 1:
        raise TemplateError(f"bad rune {src[pos:end + 1]}")
    return end + 1, ord(value)


def _unquote(body: str, quote: str) -> str:
    """Go's escapes in a quoted string or rune: \\n, \\t, \\", \\x41, \\u00e9, \\101, ..."""
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1:i + 2]
        size = {"x": 2, "u": 4, "U": 8}.get(e, 0)
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
            continue
        if e == quote:
            out.append(e)
            i += 2
            continue
        digits, base = (body[i + 2:i + 2 + size], 16) if size else (body[i + 1:i + 4], 8)
        if not size and (len(digits) < 3 or e not in "01234567"):
            raise TemplateError(f"bad escape \\{e} in a quoted string")
        try:
            code = int(digits, base)
        except ValueError:
            code = -1
        if len(digits) != (size or 3) or not 0 <= code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF \
                or (not size and code > 255):
            raise TemplateError(f"bad escape \\{e}{digits} in a quoted string")
        out.append(chr(code))
        i += 2 + size if size else 4
    return "".join(out)


def _number(text: str) -> int | float:
    """A number literal's value (Go's: ints in 64 bits; 0x, 0o, 0b and _ allowed)."""
    body = text.replace("_", "")
    sign = -1 if body.startswith("-") else 1
    if body.startswith(("+", "-")):
        body = body[1:]
    try:
        if re.fullmatch(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[1-9][0-9]*|0", body):
            value = sign * int(body, 0)
        elif re.fullmatch(r"0[0-7]+", body):
            value = sign * int(body, 8)
        elif re.fullmatch(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", body):
            number = sign * float(body)
            if math.isinf(number):
                raise TemplateError(f"number {text} is out of range")
            return number
        else:
            raise ValueError(text)
    except ValueError:
        raise TemplateError(f"bad number syntax: {text!r}") from None
    if not -(1 << 63) <= value < 1 << 63:
        raise TemplateError(f"number {text} overflows int")
    return value


# ---------------------------------------------------------------------------- tree

@dataclass(frozen=True)
class Field:
    names: tuple[str, ...]

    def __str__(self) -> str:
        return "".join("." + n for n in self.names)


@dataclass(frozen=True)
class Variable:
    name: str
    names: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name + "".join("." + n for n in self.names)


@dataclass(frozen=True)
class Literal:
    """A dot (`.`), nil, a bool, a number or a string; `text` as written."""

    text: str
    value: Any


@dataclass(frozen=True)
class Ident:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Paren:
    pipe: Pipe

    def __str__(self) -> str:
        return f"({self.pipe})"


@dataclass(frozen=True)
class Chain:
    """Fields of what an operand (a parenthesized pipeline, a function) gives: `(x).A.B`."""

    node: Operand
    names: tuple[str, ...]

    def __str__(self) -> str:
        return str(self.node) + "".join("." + n for n in self.names)


Operand = Field | Variable | Literal | Ident | Paren | Chain


@dataclass(frozen=True)
class Command:
    args: tuple[Operand, ...]

    def __str__(self) -> str:
        return " ".join(a.text if isinstance(a, Literal) else str(a) for a in self.args)


@dataclass(frozen=True)
class Pipe:
    decls: tuple[str, ...]
    is_assign: bool
    cmds: tuple[Command, ...]

    def __str__(self) -> str:
        decl = f"{', '.join(self.decls)} {'=' if self.is_assign else ':='} " if self.decls else ""
        return decl + " | ".join(str(c) for c in self.cmds)


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Action:
    pipe: Pipe


@dataclass(frozen=True)
class Control:
    """{{if}}, {{with}} or {{range}} (`kind`), with its body and its else branch."""

    kind: str
    pipe: Pipe
    body: tuple[Node, ...]
    else_: tuple[Node, ...]


@dataclass(frozen=True)
class Jump:
    """{{break}} or {{continue}}."""

    kind: str


Node = Text | Action | Control | Jump


class _Dot:
    """The value of a `.` literal: the dot of where it is evaluated."""


DOT = _Dot()


# ---------------------------------------------------------------------------- parser

def parse(src: str, *, docker_escapes: bool = False) -> tuple[Node, ...]:
    """The tree of template `src` (a TemplateError when it is not a valid template)."""
    try:
        return _Parser(lex(src, docker_escapes=docker_escapes)).parse()
    except RecursionError:
        raise _too_deep() from None


_OPERAND_START = frozenset({"bool", "dot", "field", "ident", "number", "nil", "string", "var",
                            "lparen"})


def _shown(token: Token) -> str:
    return "end of template" if token.kind == "eof" else repr(token.text)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.vars = ["$"]
        self.depth = 0
        self.range_depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != "eof":
            self.i += 1
        return token

    def peek_non_space(self) -> Token:
        while self.peek().kind == "space":
            self.i += 1
        return self.peek()

    def next_non_space(self) -> Token:
        self.peek_non_space()
        return self.next()

    def parse(self) -> tuple[Node, ...]:
        nodes, stop = self.item_list()
        if stop != "eof":
            raise TemplateError(f"{{{{{stop}}}}} without {{{{if}}}}, {{{{with}}}} or {{{{range}}}}")
        return nodes

    def item_list(self) -> tuple[tuple[Node, ...], str]:
        """The nodes up to `{{end}}`, `{{else}}` or the template's end, and which it was."""
        nodes: list[Node] = []
        while True:
            token = self.next()
            if token.kind == "eof":
                return tuple(nodes), "eof"
            if token.kind == "text":
                nodes.append(Text(token.value))
                continue
            key = self.peek_non_space()
            if key.kind == "keyword" and key.text in ("end", "else"):
                self.next()
                return tuple(nodes), key.text
            nodes.append(self.action())

    def action(self) -> Node:
        token = self.next_non_space()
        if token.kind == "keyword":
            if token.text in ("if", "with", "range"):
                return self.control(token.text)
            if token.text in ("break", "continue"):
                if not self.range_depth:
                    raise TemplateError(f"{{{{{token.text}}}}} outside {{{{range}}}}")
                self.expect_right(token.text)
                return Jump(token.text)
            raise TemplateError(f"{{{{{token.text}}}}} is not supported (a --format is one template)")
        self.i -= 1
        return Action(self.pipeline("command"))

    def expect_right(self, context: str) -> None:
        token = self.next_non_space()
        if token.kind != "right":
            raise TemplateError(f"unexpected {_shown(token)} in {{{{{context}}}}}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _too_deep()

    def control(self, kind: str) -> Control:
        """An {{if}}, {{with}} or {{range}} after its keyword, up to its {{end}}."""
        self.enter()
        mark = len(self.vars)
        pipe = self.pipeline(kind)
        self.range_depth += kind == "range"
        body, stop = self.item_list()
        self.range_depth -= kind == "range"
        else_: tuple[Node, ...] = ()
        if stop == "else":
            chained = self.peek_non_space()
            if kind != "range" and chained.kind == "keyword" and chained.text == kind:
                self.next()  # {{else if x}}: an {{if}} in the {{else}}, ended by the same {{end}}
                else_, stop = (self.control(kind),), "chained"
            else:
                self.expect_right("else")
                else_, stop = self.item_list()
                if stop == "else":
                    raise TemplateError(f"a second {{{{else}}}} in {{{{{kind}}}}}")
        if stop == "eof":
            raise TemplateError(f"{{{{{kind}}}}} is not closed with {{{{end}}}}")
        if stop == "end":
            self.expect_right("end")
        del self.vars[mark:]
        self.depth -= 1
        return Control(kind, pipe, body, else_)

    def pipeline(self, context: str, end: str = "right") -> Pipe:
        decls, is_assign = self.declarations(context)
        cmds: list[Command] = []
        while True:
            token = self.next_non_space()
            if token.kind == end:
                break
            if token.kind not in _OPERAND_START:
                raise TemplateError(f"unexpected {_shown(token)} in {context}")
            self.i -= 1
            cmds.append(self.command())
            if self.tokens[self.i - 1].kind == "pipe" and self.peek_non_space().kind == end:
                raise TemplateError(f"a | with no command after it in {context}")
        if not cmds:
            raise TemplateError(f"missing value for {context}")
        for stage, cmd in enumerate(cmds[1:], 2):
            if isinstance(cmd.args[0], Literal):
                raise TemplateError(f"{cmd.args[0].text} cannot take the value of a pipe "
                                    f"(stage {stage} of {context})")
        return Pipe(decls, is_assign, tuple(cmds))

    def declarations(self, context: str) -> tuple[tuple[str, ...], bool]:
        """`$x :=`, `$x =` or, in a range, `$i, $e :=` at the start of a pipeline."""
        start = self.i
        names: list[str] = []
        while self.peek_non_space().kind == "var":
            names.append(self.next().value)
            after = self.next_non_space()
            if after.kind in ("declare", "assign"):
                is_assign = after.kind == "assign"
                for name in names:
                    if is_assign and name not in self.vars:
                        raise TemplateError(f"undefined variable {name}")
                    if not is_assign:
                        self.vars.append(name)
                return tuple(names), is_assign
            if after.kind != "comma":
                break
            if context != "range" or len(names) > 1:
                raise TemplateError(f"too many declarations in {context}")
        if len(names) > 1:
            raise TemplateError("range's variables are declared with $i, $e := or assigned with =")
        self.i = start
        return (), False

    def command(self) -> Command:
        args: list[Operand] = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            token = self.next()
            if token.kind == "space":
                continue
            if token.kind in ("right", "rparen"):
                self.i -= 1
            elif token.kind != "pipe":
                raise TemplateError(f"unexpected {_shown(token)} in an operand")
            break
        if not args:
            raise TemplateError("an empty command")
        return Command(tuple(args))

    def operand(self) -> Operand | None:
        node = self.term()
        if node is None or self.peek().kind != "field":
            return node
        names: list[str] = []
        while self.peek().kind == "field":
            names.append(self.next().value)
        if isinstance(node, Field):
            return Field(node.names + tuple(names))
        if isinstance(node, Variable):
            return Variable(node.name, node.names + tuple(names))
        if isinstance(node, Literal):
            raise TemplateError(f"unexpected .{names[0]} after {node.text}")
        return Chain(node, tuple(names))

    def term(self) -> Operand | None:
        token = self.next_non_space()
        kind = token.kind
        if kind == "ident":
            if token.text not in FUNCTIONS:
                raise TemplateError(f"unknown function {token.text!r}")
            return Ident(token.text)
        if kind == "var":
            if token.value not in self.vars:
                raise TemplateError(f"undefined variable {token.value}")
            return Variable(token.value)
        if kind == "field":
            return Field((token.value,))
        if kind in ("dot", "nil", "bool", "number", "string"):
            return Literal(token.text, DOT if kind == "dot" else token.value)
        if kind == "lparen":
            self.enter()
            pipe = self.pipeline("parenthesized pipeline", "rparen")
            self.depth -= 1
            return Paren(pipe)
        self.i -= 1
        return None


# ---------------------------------------------------------------------------- printing

def go_type(value: Any) -> str:
    """The Go type a JSON value decodes to, as fmt names it."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "[]interface {}"


def describe(value: Any) -> str:
    """A value in an error message: its type, and a scalar's value (shortened)."""
    if value is None:
        return "<nil>"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    shown = repr(value) if isinstance(value, str) else go_text(value)
    return f"{go_type(value)} {shown[:40] + '...' if len(shown) > 40 else shown}"


def sorted_keys(mapping: dict[Any, Any]) -> list[Any]:
    try:
        return sorted(mapping)
    except TypeError:
        return sorted(mapping, key=str)


def bounded_join(sep: str, pieces: Iterable[str]) -> str:
    """`sep.join(pieces)`, a TemplateError once that is more than MAX_OUTPUT."""
    out: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece) + len(sep)
        if size > MAX_OUTPUT + len(sep):
            raise _too_big("the template")
        out.append(piece)
    return sep.join(out)


def go_text(value: Any) -> str:
    """A value as Go's %v prints it: `map[k:v]` (keys sorted), `[a b]`, `true`, `<nil>`."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict):
        pairs = (f"{go_text(k)}:{go_text(value[k])}" for k in sorted_keys(value))
        return "map[" + bounded_join(" ", pairs) + "]"
    if isinstance(value, list | tuple):
        return "[" + bounded_join(" ", (go_text(v) for v in value)) + "]"
    return str(value)


def printed(value: Any) -> str:
    """What an action prints: as %v, but `<no value>` for nil (a missing value)."""
    return "<no value>" if value is None else go_text(value)


def go_float(x: float) -> str:
    """A float as Go's %v: the shortest digits that read back, an exponent from 1e+06 on."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(x)).as_tuple()
    assert isinstance(exponent, int)
    point = len(digit_tuple) + exponent  # (the decimal point's place in the digits)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    neg = "-" if sign else ""
    exp = point - 1
    if exp < -4 or exp >= 6:  # (Go's %g with the shortest digits: precision 6 decides)
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return neg + digits + "0" * (point - len(digits))
    return f"{neg}{digits[:point]}.{digits[point:]}"


def go_quote(text: str, ascii_only: bool = False) -> str:
    """Go's strconv.Quote: a double-quoted string with Go's escapes."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in "\"\\":
            out.append("\\" + ch)
        elif ch.isprintable() and (code < 0x80 or not ascii_only):
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _quote_rune(code: int) -> str:
    if not 0 <= code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        code = 0xFFFD
    quoted = go_quote(chr(code))[1:-1]
    return "'" + ("\\'" if quoted == "'" else '"' if quoted == '\\"' else quoted) + "'"


def go_sprint(args: Sequence[Any]) -> str:
    """Go's fmt.Sprint: spaces between operands when neither is a string."""
    def pieces() -> Iterator[str]:
        for i, arg in enumerate(args):
            if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
                yield " "
            yield go_text(arg)

    return bounded_join("", pieces())


_VERB = re.compile(r"%([-+# 0]*)(\*|[0-9]+)?(?:\.(\*|[0-9]*))?(.?)", re.S)


def go_sprintf(fmt: str, args: Sequence[Any]) -> str:
    """Go's fmt.Sprintf: verbs v s d q t f e g x X o b c U T and %%, with flags, width and
    precision; a mismatch is written in the text as Go writes it (`%!d(string=x)`)."""
    out: list[str] = []
    size = pos = argn = 0
    while pos < len(fmt):
        percent = fmt.find("%", pos)
        if percent < 0:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:percent])
        m = _VERB.match(fmt, percent)
        assert m is not None
        flags, width_text, prec_text, verb = m.groups()
        pos = m.end()
        if verb == "%":
            out.append("%")
            continue
        width, argn = _size(width_text, args, argn)
        if width is None and width_text is not None:
            out.append("%!(BADWIDTH)")
        elif width is not None and width < 0:
            flags, width = flags + "-", -width
        prec, argn = _size(prec_text, args, argn)
        if prec is not None and prec < 0:
            prec = None
        if prec is None and prec_text is not None:
            out.append("%!(BADPREC)")
        if not verb:
            out.append("%!(NOVERB)")
            break
        if argn >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        piece = _format(args[argn], verb, flags, width, prec)
        argn += 1
        size += len(piece)
        if size > MAX_OUTPUT:
            raise _too_big("printf")
        out.append(piece)
    if argn < len(args):
        extra = ", ".join("<nil>" if a is None else f"{go_type(a)}={go_text(a)}" for a in args[argn:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _size(text: str | None, args: Sequence[Any], argn: int) -> tuple[int | None, int]:
    """A width or precision as written (`*`: the next argument; ``: 0; None: none, or
    one that is not a number up to 10**6), and the next argument's number."""
    if text is None:
        return None, argn
    if text == "*":
        star = args[argn] if argn < len(args) else None
        good = isinstance(star, int) and not isinstance(star, bool) and abs(star) <= 10**6
        return (star if good else None), argn + 1
    if not text:
        return 0, argn
    return (int(text) if len(text) <= 7 and int(text) <= 10**6 else None), argn


def _format(arg: Any, verb: str, flags: str, width: int | None, prec: int | None) -> str:
    """One operand of printf; lists and maps have the verb applied to each element (Go's)."""
    if isinstance(arg, dict | list | tuple) and verb != "T":
        def each(v: Any) -> str:
            return "<nil>" if v is None else _format(v, verb, flags, width, prec)

        if isinstance(arg, dict):
            return "map[" + bounded_join(" ", (f"{each(k)}:{each(arg[k])}" for k in sorted_keys(arg))) + "]"
        return "[" + bounded_join(" ", (each(v) for v in arg)) + "]"
    body = _format_scalar(arg, verb, flags, prec)
    if body is None:
        shown = "<nil>" if arg is None else f"{go_type(arg)}={go_text(arg)}"
        return f"%!{verb}({shown})"
    if width is None or len(body) >= width:
        return body
    if "-" in flags:
        return body.ljust(width)
    numeric = isinstance(arg, int | float) and verb not in "cqTU"
    if "0" in flags and numeric and body[:1] in "+- " and body[1:2].isdigit():
        return body[0] + body[1:].rjust(width - 1, "0")
    if "0" in flags and numeric and body[:1].isdigit():
        return body.rjust(width, "0")
    return body.rjust(width)


def _signed(body: str, flags: str) -> str:
    if body.startswith("-"):
        return body
    return ("+" if "+" in flags else " " if " " in flags else "") + body


def _format_scalar(arg: Any, verb: str, flags: str, prec: int | None) -> str | None:
    """The text of a scalar under a verb, without padding; None: Go's bad verb."""
    if verb == "T":
        return go_type(arg)
    if verb == "v":
        flags = flags.replace("+", "").replace("#", "")  # (%+v and %#v: Go's struct syntaxes)
    if arg is None:
        return "<nil>" if verb == "v" else None
    if isinstance(arg, bool):
        return ("true" if arg else "false") if verb in "vt" else None
    if isinstance(arg, str):
        text = arg[:prec] if prec is not None else arg
        if verb in "vs":
            return text
        if verb == "q":
            if "#" in flags and "`" not in text and all(c == "\t" or c.isprintable() for c in text):
                return f"`{text}`"
            return go_quote(text, ascii_only="+" in flags)
        if verb in "xX":
            hexed = (" " if " " in flags else "").join(f"{b:02x}" for b in text.encode())
            return hexed.upper() if verb == "X" else hexed
        return None
    if isinstance(arg, float) and verb == "d" and arg.is_integer():
        arg = int(arg)  # (docker's JSON numbers are floats: %d of 3.0 is 3)
    if isinstance(arg, int):
        if verb in "eEfFgG":
            return _format_scalar(float(arg), verb, flags, prec)
        if verb == "c":
            return chr(arg) if 0 <= arg <= 0x10FFFF and not 0xD800 <= arg <= 0xDFFF else "\ufffd"
        if verb == "q":
            return _quote_rune(arg)
        if verb == "U":
            return f"U+{arg:04X}"
        base = {"v": "d", "d": "d", "b": "b", "o": "o", "O": "o", "x": "x", "X": "X"}.get(verb)
        if base is None:
            return None
        digits = format(abs(arg), base)
        if prec is not None:
            digits = "" if prec == 0 and arg == 0 else digits.zfill(prec)
        prefix = {"O": "0o"}.get(verb, "")
        if "#" in flags:
            prefix = {"x": "0x", "X": "0X", "o": "0", "b": "0b"}.get(verb, prefix)
        return _signed(("-" if arg < 0 else "") + prefix + digits, flags)
    if isinstance(arg, float):
        if verb in "vgG" and prec is None:
            body = go_float(arg)
            return _signed(body.upper() if verb == "G" else body, flags)
        if verb in "eEfFgGv" and (math.isinf(arg) or math.isnan(arg)):
            return _signed(go_float(arg), flags)
        if verb in "eEfFgG":
            body = f"%.{6 if prec is None else prec}{verb}" % arg
            return _signed(body, flags)
        if verb == "v":
            return _signed(f"%.{prec}g" % arg, flags)
    return None


def _too_big(what: str) -> TemplateError:
    return TemplateError(f"{what} makes more than {MAX_OUTPUT >> 20} MiB of text")


# ---------------------------------------------------------------------------- functions

def truth(value: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None:
        return False
    if isinstance(value, bool | int | float):
        return bool(value)
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return go_type(value)


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _kind(a) != _kind(b):
        raise TemplateError(f"eq: incompatible types for comparison: {describe(a)} and {describe(b)}")
    if isinstance(a, dict | list | tuple):
        raise TemplateError(f"eq: {describe(a)} cannot be compared")
    return bool(a == b)


def _less(name: str, a: Any, b: Any) -> bool:
    for value in (a, b):
        if _kind(value) not in ("number", "string"):
            raise TemplateError(f"{name}: {describe(value)} cannot be ordered")
    if _kind(a) != _kind(b):
        raise TemplateError(f"{name}: incompatible types for comparison: {describe(a)} and {describe(b)}")
    return bool(a < b)


def _string(name: str, value: Any, what: str = "") -> str:
    if not isinstance(value, str):
        raise TemplateError(f"{name}: {what or 'its argument'} is {describe(value)}, not a string")
    return value


def _int(name: str, value: Any, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TemplateError(f"{name}: {what} is {describe(value)}, not an integer")
    return value


def _index(args: list[Any]) -> Any:
    item = args[0]
    for key in args[1:]:
        if isinstance(item, dict):
            if not isinstance(key, str):
                raise TemplateError(f"index: the key of a map is a string, not {describe(key)}")
            item = item.get(key)
        elif isinstance(item, list | tuple | str):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"index of {describe(item)} with {describe(key)}: not a map")
            length = len(item.encode()) if isinstance(item, str) else len(item)
            if not 0 <= key < length:
                raise TemplateError(f"index out of range: {key}")
            item = item.encode()[key] if isinstance(item, str) else item[key]
        else:
            raise TemplateError(f"index of {describe(item)}: not a map or a list")
    return item


def _slice(args: list[Any]) -> Any:
    item, indexes = args[0], args[1:]
    if not isinstance(item, str | list | tuple):
        raise TemplateError(f"slice of {describe(item)}: not a string or a list")
    if isinstance(item, str) and len(indexes) == 3:
        raise TemplateError("slice: a string takes 2 indexes at most")
    data: bytes | list[Any] | tuple[Any, ...] = item.encode() if isinstance(item, str) else item
    bounds = [0, len(data)]
    for i, index in enumerate(indexes):
        number = _int("slice", index, "an index")
        if not 0 <= number <= len(data):
            raise TemplateError(f"slice: index out of range: {number}")
        if i < 2:
            bounds[i] = number
        elif number < bounds[1]:
            raise TemplateError(f"slice: invalid slice index: {bounds[1]} > {number}")
    if bounds[0] > bounds[1]:
        raise TemplateError(f"slice: invalid slice index: {bounds[0]} > {bounds[1]}")
    part = data[bounds[0]:bounds[1]]
    return part.decode(errors="replace") if isinstance(part, bytes) else list(part)


def _len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())  # (Go's len of a string: its bytes)
    if isinstance(value, list | tuple | dict):
        return len(value)
    raise TemplateError(f"len of {describe(value)}")


def _as_text(args: Sequence[Any]) -> str:
    return args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(args)


_HTML = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&#39;", '"': "&#34;", "\0": "\ufffd"}
_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026",
       "=": "\\u003D", "`": "\\u0060"}


def _js(text: str) -> str:
    return "".join(_JS.get(c) or (c if c.isprintable() else f"\\u{ord(c):04X}") for c in text)


def _title(text: str) -> str:
    """docker's title: each word's first letter in capitals, the rest as it is."""
    return re.sub(r"(?<![\w'])\w", lambda m: m.group(0).upper(), text)


def _pad(args: list[Any]) -> str:
    text = _string("pad", args[0], "the string")
    before, after = _int("pad", args[1], "the prefix"), _int("pad", args[2], "the suffix")
    if before < 0 or after < 0 or before + after > MAX_OUTPUT:
        raise TemplateError(f"pad: {before}, {after}: not a number of spaces")
    return " " * before + text + " " * after if text else text


def _truncate(args: list[Any]) -> str:
    text, length = _string("truncate", args[0], "the string"), _int("truncate", args[1], "the length")
    if length < 0:
        raise TemplateError(f"truncate: a negative length ({length})")
    return text[:length]


def _join(args: list[Any]) -> str:
    if not isinstance(args[0], list | tuple):
        raise TemplateError(f"join: its first argument is {describe(args[0])}, not a list")
    return bounded_join(_string("join", args[1], "the separator"), (go_text(v) for v in args[0]))


def _split(args: list[Any]) -> list[str]:
    text, sep = _string("split", args[0], "the string"), _string("split", args[1], "the separator")
    return list(text) if not sep else text.split(sep)


def _go_json_numbers(value: Any) -> Any:
    """Whole floats as Go's encoding/json writes them: 1, not 1.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _go_json_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_go_json_numbers(v) for v in value]
    return value


def _json(value: Any) -> str:
    try:  # (Go's: compact, whole floats without .0)
        return json.dumps(_go_json_numbers(value), separators=(",", ":"), ensure_ascii=False)
    except ValueError as e:
        raise TemplateError(f"json: {e}") from None


def _printf(args: list[Any]) -> str:
    return go_sprintf(_string("printf", args[0], "the format"), args[1:])


@dataclass(frozen=True)
class Function:
    call: Callable[[list[Any]], Any]
    least: int
    most: int | None  # (None: any number)


def _fixed(n: int, call: Callable[[list[Any]], Any]) -> Function:
    return Function(call, n, n)


FUNCTIONS: dict[str, Function] = {
    "and": Function(lambda a: a[-1], 1, None),  # (short-circuit: see _Exec.call)
    "or": Function(lambda a: a[-1], 1, None),
    "not": _fixed(1, lambda a: not truth(a[0])),
    "eq": Function(lambda a: any(_equal(a[0], b) for b in a[1:]), 2, None),
    "ne": _fixed(2, lambda a: not _equal(a[0], a[1])),
    "lt": _fixed(2, lambda a: _less("lt", a[0], a[1])),
    "le": _fixed(2, lambda a: _less("le", a[0], a[1]) or _equal(a[0], a[1])),
    "gt": _fixed(2, lambda a: not (_less("gt", a[0], a[1]) or _equal(a[0], a[1]))),
    "ge": _fixed(2, lambda a: not _less("ge", a[0], a[1])),
    "len": _fixed(1, lambda a: _len(a[0])),
    "index": Function(_index, 1, None),
    "slice": Function(_slice, 1, 4),
    "print": Function(go_sprint, 0, None),
    "printf": Function(_printf, 1, None),
    "println": Function(lambda a: bounded_join(" ", (go_text(v) for v in a)) + "\n", 0, None),
    "html": Function(lambda a: "".join(_HTML.get(c, c) for c in _as_text(a)), 0, None),
    "js": Function(lambda a: _js(_as_text(a)), 0, None),
    "urlquery": Function(lambda a: urllib.parse.quote_plus(_as_text(a), safe=""), 0, None),
    "json": _fixed(1, lambda a: _json(a[0])),
    "join": _fixed(2, _join),
    "split": _fixed(2, _split),
    "upper": _fixed(1, lambda a: _string("upper", a[0]).upper()),
    "lower": _fixed(1, lambda a: _string("lower", a[0]).lower()),
    "title": _fixed(1, lambda a: _title(_string("title", a[0]))),
    "pad": _fixed(3, _pad),
    "truncate": _fixed(2, _truncate),
}


# ---------------------------------------------------------------------------- evaluator

FieldOf = Callable[[Any, str], Any]
"""A field `name` of a value (raises TemplateError when it has none)."""
MethodOf = Callable[[Any, str, list[Any]], Any]
"""A field `name` of a value called with arguments (Go's method call)."""


def _go_field(receiver: Any, name: str) -> Any:
    """Go's field of a map: the key as written; nil when the map has no such key."""
    if not isinstance(receiver, dict):
        raise TemplateError(f"{name!r} is not a field of {describe(receiver)}")
    return receiver.get(name)


def _no_method(receiver: Any, name: str, args: list[Any]) -> Any:
    raise TemplateError(f"{name!r} is not a method: it takes no arguments")


_NO_FINAL: Any = object()  # (a command that is first in its pipeline)


def execute(tree: Sequence[Node], data: Any, *, field: FieldOf = _go_field,
            method: MethodOf = _no_method) -> str:
    """The text `tree` makes of `data`."""
    run = _Exec(data, field, method)
    try:
        run.walk(data, tree)
    except RecursionError:
        raise _too_deep() from None
    return "".join(run.out)


class _Exec:
    def __init__(self, data: Any, field: FieldOf, method: MethodOf) -> None:
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.field, self.method = field, method
        self.out: list[str] = []
        self.size = self.steps = self.work = 0

    def spend(self, values: Iterable[Any]) -> None:
        """Count the text a function call takes in or makes: a template that builds big
        strings over and over stops, however few steps it takes."""
        self.work += sum(len(v) for v in values if isinstance(v, str))
        if self.work > MAX_WORK:
            raise TemplateError(f"the template's functions build more than {MAX_WORK >> 20} "
                                "MiB of text")

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateError(f"the template takes more than {MAX_STEPS} steps")

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:
            raise _too_big("the template")
        self.out.append(text)

    def walk(self, dot: Any, nodes: Iterable[Node]) -> None:
        for node in nodes:
            self.step()
            if isinstance(node, Text):
                self.write(node.text)
            elif isinstance(node, Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decls:
                    self.write(printed(value))
            elif isinstance(node, Control):
                mark = len(self.vars)
                try:
                    if node.kind == "range":
                        self.range(dot, node)
                    else:
                        value = self.pipeline(dot, node.pipe)
                        if truth(value):
                            self.walk(value if node.kind == "with" else dot, node.body)
                        else:
                            self.walk(dot, node.else_)
                finally:
                    del self.vars[mark:]
            else:
                raise _Break() if node.kind == "break" else _Continue()

    def range(self, dot: Any, node: Control) -> None:
        value = self.commands(dot, node.pipe)
        decls = node.pipe.decls
        items: Iterable[tuple[Any, Any]]
        if value is None:
            items = ()
        elif isinstance(value, list | tuple):
            items = enumerate(value)
        elif isinstance(value, dict):
            items = ((k, value[k]) for k in sorted_keys(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(decls) > 1:
                raise TemplateError(f"range over an integer ({value}) takes one variable")
            items = ((i, i) for i in range(value))
        else:
            raise TemplateError(f"range can't iterate over {describe(value)}")
        base = len(self.vars)
        if not node.pipe.is_assign:
            self.vars += [(name, value) for name in decls]
        ran = False
        for key, elem in items:
            ran = True
            self.step()
            for name, val in zip(decls, (key, elem)[-len(decls):] if decls else (), strict=True):
                self.set_var(name, val)
            mark = len(self.vars)
            try:
                self.walk(elem, node.body)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                del self.vars[mark:]
        del self.vars[base:]
        if not ran:
            self.walk(dot, node.else_)

    def pipeline(self, dot: Any, pipe: Pipe) -> Any:
        value = self.commands(dot, pipe)
        for name in pipe.decls:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.vars.append((name, value))
        return value

    def commands(self, dot: Any, pipe: Pipe) -> Any:
        value = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        return value

    def var(self, name: str) -> Any:
        for known, value in reversed(self.vars):
            if known == name:
                return value
        raise TemplateError(f"undefined variable {name}")

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise TemplateError(f"undefined variable {name}")

    def command(self, dot: Any, cmd: Command, final: Any) -> Any:
        self.step()
        first, args = cmd.args[0], cmd.args[1:]
        if isinstance(first, Field):
            return self.fields(dot, dot, first.names, args, final)
        if isinstance(first, Chain):
            return self.fields(dot, self.arg(dot, first.node), first.names, args, final)
        if isinstance(first, Variable) and first.names:
            return self.fields(dot, self.var(first.name), first.names, args, final)
        if isinstance(first, Ident):
            return self.call(dot, first.name, args, final)
        if args or final is not _NO_FINAL:
            shown = first.text if isinstance(first, Literal) else str(first)
            raise TemplateError(f"{shown} is not a function: it takes no arguments")
        if isinstance(first, Literal) and first.text == "nil":
            raise TemplateError("nil is not a command")
        return self.arg(dot, first)

    def arg(self, dot: Any, node: Operand) -> Any:
        """The value of an operand as an argument."""
        if isinstance(node, Literal):
            return dot if node.value is DOT else node.value
        if isinstance(node, Field):
            return self.fields(dot, dot, node.names, (), _NO_FINAL)
        if isinstance(node, Variable):
            return self.fields(dot, self.var(node.name), node.names, (), _NO_FINAL)
        if isinstance(node, Paren):
            return self.pipeline(dot, node.pipe)
        if isinstance(node, Ident):
            return self.call(dot, node.name, (), _NO_FINAL)
        return self.fields(dot, self.arg(dot, node.node), node.names, (), _NO_FINAL)

    def fields(self, dot: Any, receiver: Any, names: Sequence[str], args: Sequence[Operand],
               final: Any) -> Any:
        """`receiver.A.B...`, the last one called with `args` (and `final`) if any."""
        for name in names[:-1] if args or final is not _NO_FINAL else names:
            receiver = self.field(receiver, name)
        if not args and final is _NO_FINAL:
            return receiver
        values = [self.arg(dot, a) for a in args] + ([] if final is _NO_FINAL else [final])
        return self.method(receiver, names[-1], values)

    def call(self, dot: Any, name: str, args: Sequence[Operand], final: Any) -> Any:
        function = FUNCTIONS[name]
        count = len(args) + (final is not _NO_FINAL)
        if count < function.least or (function.most is not None and count > function.most):
            want = (f"{function.least}" if function.most == function.least else
                    f"at least {function.least}" if function.most is None else
                    f"{function.least} to {function.most}")
            raise TemplateError(f"{name} takes {want} arguments, not {count}")
        if name in ("and", "or"):  # (the deciding value; the rest is not evaluated)
            value: Any = None
            for node in args:
                value = self.arg(dot, node)
                if truth(value) == (name == "or"):
                    return value
            return value if final is _NO_FINAL else final
        values = [self.arg(dot, a) for a in args] + ([] if final is _NO_FINAL else [final])
        self.spend(values)
        result = function.call(values)
        if isinstance(result, str) and len(result) > MAX_OUTPUT:
            raise _too_big(name)
        self.spend([result])
        return result
