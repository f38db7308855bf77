"""Parse tile-language specs (``.tile`` files or decorated Python functions) into :mod:`.ast`.

* :func:`parse_module` parses a whole spec: ``def`` kernels and ``example`` blocks.
* :func:`parse_function` parses one kernel written as a decorated Python function.

Every span is in the user's coordinates (``Source.first_line``/``col_offset``
applied), and every failure is a :class:`~tilec.errors.TileSyntaxError` that
speaks the tile language: no Lark or Python exception escapes.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import threading
import tokenize
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from lark import Lark, Token
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.indenter import Indenter
from lark.lexer import PatternStr

from tilec.errors import Source, Span, TileSyntaxError
from tilec.frontend import ast
from tilec.frontend._builder import build_module

__all__ = ["parse_function", "parse_module"]

_GRAMMAR = Path(__file__).with_name("grammar.lark")
_LOCK = threading.Lock()  # the indenter keeps per-parse state

_OPEN = {"LPAR": "(", "LSQB": "[", "LBRACE": "{"}
_CLOSE = {"RPAR": ")", "RSQB": "]", "RBRACE": "}"}
_PAIR = {"(": ")", "[": "]", "{": "}"}
_BRACKET_WORD = {"(": "parenthesis", "[": "bracket", "{": "brace"}
_HEADERS = {"for": "the for header", "def": "the def header", "example": "the example header",
            "if": "the if condition", "elif": "the elif condition", "else": "'else'", "while": "the while condition",
            "with": "the with header", "try": "'try'", "except": "the except clause", "finally": "'finally'",
            "class": "the class header"}
_BLOCKS = {"for": "'for' loop", "def": "kernel", "example": "example block"}
_REGEX_TERMINALS = {"NAME": "a name", "DEC_NUMBER": "a number", "HEX_NUMBER": "a number",
                    "OCT_NUMBER": "a number", "BIN_NUMBER": "a number", "FLOAT_NUMBER": "a number",
                    "IMAG_NUMBER": "a number", "STRING": "a string", "LONG_STRING": "a string",
                    "AUGOP": "an augmented assignment such as '+='", "_NEWLINE": "the end of the line",
                    "_INDENT": "an indented block", "_DEDENT": "the end of the block",
                    "$END": "the end of the file"}
# line breaks that str.splitlines() honours but the lexer does not count
_ODD_LINE_BREAK = re.compile("\r(?!\n)|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class _IndentationProblem(Exception):
    """Raised by the indenter; converted into a TileSyntaxError by :func:`_parse`."""

    def __init__(self, message: str, line: int, column: int, hint: str, levels: tuple[int, ...] = ()):
        super().__init__(message)
        self.message, self.line, self.column, self.hint, self.levels = message, line, column, hint, levels


class _TileIndenter(Indenter):
    """Lark's Python indenter, plus what good error messages need.

    It rejects tabs mixed with spaces and first lines that are indented, gives
    _NEWLINE/_INDENT/_DEDENT tokens useful positions (the end of the line's
    last token; the start of the indented line), and remembers the open
    brackets and the last tokens seen, for hints.
    """

    NL_type = "_NEWLINE"
    OPEN_PAREN_types: ClassVar[list[str]] = list(_OPEN)
    CLOSE_PAREN_types: ClassVar[list[str]] = list(_CLOSE)
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def __init__(self) -> None:
        super().__init__()
        self.text_len = 0
        self._reset()

    def _reset(self) -> None:
        self.indent_level = [0]
        self.brackets: list[Token] = []  # open brackets, innermost last
        self.recent: list[tuple[Token, Token]] = []  # last two real tokens, each with its line's first token
        self.line_first: Token | None = None
        self.style = ""  # the indentation character in use
        self.exhausted = False

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self._reset()
        return self._process(stream)

    def _process(self, stream: Iterator[Token]) -> Iterator[Token]:
        for tok in stream:
            if tok.type == self.NL_type:
                if not self.brackets:
                    yield from self.handle_NL(tok)
                continue
            if not self.recent and self.line_first is None and tok.column != 1 and tok.line == 1:
                raise _IndentationProblem("unexpected indent", 1, tok.column or 1,
                                          "the first line of a spec must not be indented")
            if self.line_first is None:
                self.line_first = tok
            self.recent = [*self.recent[-1:], (tok, self.line_first)]
            yield tok
            if tok.type in _OPEN:
                self.brackets.append(tok)
            elif tok.type in _CLOSE and self.brackets:
                self.brackets.pop()
        self.exhausted = True
        while len(self.indent_level) > 1:
            self.indent_level.pop()
            yield self.after(self.DEDENT_type, self.last)

    @property
    def last(self) -> Token | None:
        """The last real (non-layout) token seen."""
        return self.recent[-1][0] if self.recent else None

    @staticmethod
    def after(type_: str, tok: Token | None, value: str = "") -> Token:
        """A token of width 0 just after ``tok`` (at the start of the text when ``tok`` is None)."""
        if tok is None:
            return Token(type_, value, 0, 1, 1, 1, 1, 0)
        return Token(type_, value, tok.end_pos, tok.end_line, tok.end_column, tok.end_line, tok.end_column,
                     tok.end_pos)

    def handle_NL(self, token: Token) -> Iterator[Token]:
        final = (token.end_pos or 0) >= self.text_len  # the newline ending the spec (and any blank lines after)
        # "unexpected end of line" points just after the line's last token, not at a comment or past the end
        yield token if self.line_first is None else self.after(self.NL_type, self.last, str(token))
        self.line_first = None
        indent_str = token.rsplit("\n", 1)[1] if "\n" in token else ""
        if indent_str and not final:
            style = self.style or indent_str[0]
            bad = next((i for i, ch in enumerate(indent_str) if ch != style), None)
            if bad is not None:
                raise _IndentationProblem("inconsistent use of tabs and spaces in indentation",
                                          token.end_line or 1, bad + 1,
                                          "tabs and spaces mixed in indentation: indent with spaces only")
            self.style = style
        indent = len(indent_str)
        anchor = self.last if final else token  # INDENT/DEDENT sit where the next line's first token starts
        if indent > self.indent_level[-1]:
            self.indent_level.append(indent)
            yield self.after(self.INDENT_type, anchor)
            return
        if indent not in self.indent_level:
            raise _IndentationProblem("unindent does not match any outer indentation level",
                                      token.end_line or 1, indent + 1, "", tuple(self.indent_level))
        while indent < self.indent_level[-1]:
            self.indent_level.pop()
            yield self.after(self.DEDENT_type, anchor)


def _grammar_cache(grammar: str) -> str | bool:
    """Where Lark keeps its LALR tables between processes (building them costs ~0.3 s)."""
    import hashlib

    from tilec.runtime.loader import cache_dir

    try:
        digest = hashlib.sha256(grammar.encode()).hexdigest()[:16]
        return str(cache_dir() / f"grammar-{digest}.lark-cache")
    except OSError:
        return False


@cache
def _parser() -> tuple[Lark, _TileIndenter, dict[str, str]]:
    """The Lark parser (built once), its indenter, and the text of each literal terminal."""
    indenter = _TileIndenter()
    grammar = _GRAMMAR.read_text(encoding="utf-8")
    lark = Lark(grammar, parser="lalr", lexer="basic", postlex=indenter, propagate_positions=True,
                maybe_placeholders=True, cache=_grammar_cache(grammar))
    literals = {t.name: t.pattern.value for t in lark.terminals if isinstance(t.pattern, PatternStr)}
    return lark, indenter, literals


def parse_module(source: Source) -> ast.Module:
    """Parse a whole spec: any number of ``def`` kernels and ``example`` blocks."""
    try:
        return _parse(source)
    except TileSyntaxError:
        raise
    except RecursionError:
        raise TileSyntaxError("the spec is nested too deeply to parse", _point(source, 1, 1),
                              hint="split deeply nested expressions into several assignments") from None
    except Exception as exc:  # a bug in the parser must still read as a syntax error
        raise TileSyntaxError(f"could not parse the spec (internal error: {type(exc).__name__})",
                              _point(source, 1, 1), hint="please report this spec as a tilec bug") from None


def parse_function(fn: Callable[..., Any]) -> tuple[ast.Module, Source]:
    """Parse a kernel written as a (decorated) Python function.

    Decorator lines are blanked and the ``def``'s indentation removed, so the
    spans of the returned module point into the function's own ``.py`` file.
    """
    what = getattr(fn, "__qualname__", None) or repr(fn)
    try:
        lines, first_line = inspect.getsourcelines(fn)
        filename = inspect.getsourcefile(fn) or inspect.getfile(fn)
    except Exception:  # OSError (no source file), TypeError (a builtin), ...
        raise TileSyntaxError(f"cannot read the source code of {what}",
                              hint="define kernels in a .py file (not in an interactive session or exec()), "
                                   "or write the spec as a .tile file") from None
    def_index = _def_line(lines)
    if def_index is None:
        raise TileSyntaxError(f"{what} is not defined with 'def'", hint="write the kernel as 'def name(params):'")
    blanked = ["\n"] * def_index + lines[def_index:]
    text = textwrap.dedent("".join(blanked))
    margin = len(blanked[def_index]) - len(blanked[def_index].lstrip(" \t"))
    if text.splitlines()[def_index][:1] in (" ", "\t"):  # a line further left than the def (inside a string)
        text = "".join(line[min(margin, len(line) - len(line.lstrip(" \t"))):] for line in blanked)
    source = Source(name=filename, text=text, first_line=first_line, col_offset=margin)
    return parse_module(source), source


def _def_line(lines: list[str]) -> int | None:
    """Index of the line holding the function's ``def`` keyword (after any decorators)."""
    depth = 0
    try:
        for tok in tokenize.generate_tokens(iter(lines).__next__):
            if tok.type == tokenize.OP and tok.string in ("(", "[", "{"):
                depth += 1
            elif tok.type == tokenize.OP and tok.string in (")", "]", "}"):
                depth -= 1
            elif tok.type == tokenize.NAME and tok.string == "def" and depth == 0:
                return tok.start[0] - 1
    except (tokenize.TokenError, SyntaxError):
        pass
    return next((i for i, line in enumerate(lines) if re.match(r"\s*(async\s+)?def\s", line)), None)


def _point(source: Source, line: int, col: int, end_line: int | None = None, end_col: int | None = None) -> Span:
    """A span from Lark coordinates (1-based line and column within ``source.text``)."""
    dl, dc = source.first_line - 1, source.col_offset
    return Span(source, line + dl, col + dc, (end_line or line) + dl, (end_col or col) + dc)


def _parse(source: Source) -> ast.Module:
    text = source.text
    odd = _ODD_LINE_BREAK.search(text)
    if odd:
        line, col = text.count("\n", 0, odd.start()) + 1, odd.start() - text.rfind("\n", 0, odd.start())
        raise TileSyntaxError(f"unexpected line-break character U+{ord(odd.group()):04X}",
                              _point(source, line, col), hint="end lines with a plain newline")
    lark, indenter, literals = _parser()
    with _LOCK:
        indenter.text_len = len(text) + (not text.endswith("\n"))
        try:
            tree = lark.parse(text if text.endswith("\n") else text + "\n")
        except _IndentationProblem as exc:
            raise _indentation_error(source, exc) from None
        except UnexpectedCharacters as exc:
            raise _character_error(source, exc) from None
        except UnexpectedToken as exc:
            raise _token_error(source, exc, indenter, literals) from None
        except (UnexpectedInput, LarkError):
            raise TileSyntaxError("invalid syntax", _end_span(source, indenter),
                                  hint="check the syntax of the spec near here") from None
    return build_module(tree, source)


def _end_span(source: Source, indenter: _TileIndenter) -> Span:
    tok = indenter.after("$END", indenter.last)
    return _point(source, tok.line or 1, tok.column or 1)


def _indentation_error(source: Source, exc: _IndentationProblem) -> TileSyntaxError:
    hint = exc.hint
    if exc.levels:
        cols = [str(level + 1 + source.col_offset) for level in exc.levels]
        hint = f"line it up with an enclosing block: column {', '.join(cols[:-1])} or {cols[-1]}" \
            if len(cols) > 1 else f"line it up with column {cols[0]}"
    return TileSyntaxError(exc.message, _point(source, exc.line, exc.column), hint=hint)


def _character_error(source: Source, exc: UnexpectedCharacters) -> TileSyntaxError:
    line, col, pos = exc.line or 1, exc.column or 1, exc.pos_in_stream or 0
    text = source.text
    char = text[pos] if 0 <= pos < len(text) else ""
    if not char.isascii() and ("a" + char).isidentifier():
        start, end = pos, pos
        while start > 0 and ("a" + text[start - 1]).isidentifier():
            start -= 1
        while end < len(text) and ("a" + text[end]).isidentifier():
            end += 1
        word, col = text[start:end], col - (pos - start)
        return TileSyntaxError(f"non-ASCII identifier '{word}'", _point(source, line, col, line, col + len(word)),
                               hint="names may only use ASCII letters, digits and '_'")
    span = _point(source, line, col)
    if char and char in "\"'":
        return TileSyntaxError("unterminated string literal", span,
                               hint="close the string with a matching quote on the same line")
    if char == "\\":
        return TileSyntaxError("unexpected character '\\'", span,
                               hint="a backslash may only continue a line: it must be the last character on it")
    code = f"U+{ord(char):04X}" if char else "end of text"
    shown = (f"'{char}'" if char.isascii() else f"'{char}' ({code})") if char.isprintable() else code
    if char == "!":
        hint = "use 'not' for negation; '!' only appears in '!='"
    elif char.isascii():
        hint = f"{shown} is not part of the tile language"
    else:
        hint = "only ASCII characters may appear outside comments"
    return TileSyntaxError(f"unexpected character {shown}", span, hint=hint)


def _describe(tok: Token, eof: bool) -> str:
    if eof:
        return "end of file"
    if tok.type in ("_NEWLINE", "_INDENT", "_DEDENT"):
        return {"_NEWLINE": "end of line", "_INDENT": "indent", "_DEDENT": "dedent"}[tok.type]
    if tok.type == "NAME":
        return f"name '{tok}'"
    if tok.type.endswith("_NUMBER"):
        return f"number '{tok}'"
    if tok.type.endswith("STRING"):
        return "string"
    return f"'{tok}'"


def _token_error(source: Source, exc: UnexpectedToken, ind: _TileIndenter, literals: dict[str, str]
                 ) -> TileSyntaxError:
    tok: Token = exc.token
    eof = tok.type == "$END" or (tok.type == "_DEDENT" and ind.exhausted)
    if tok.line is None or tok.column is None:
        tok = ind.after(tok.type, ind.last, str(tok))
    line, col = tok.line or 1, tok.column or 1
    width = (tok.end_column or col) - col if tok.end_line == tok.line else 1
    span = _point(source, line, col, line, col + max(width, 1))
    try:  # the terminals the parser could really take here (exc.expected over-approximates)
        accepts = set(exc.accepts or exc.expected)
    except Exception:
        accepts = set(exc.expected)
    expected = {literals.get(name, name) for name in accepts}
    real = bool(ind.recent) and ind.recent[-1][0] is tok
    entry = ind.recent[-2] if real and len(ind.recent) > 1 else (ind.recent[-1] if ind.recent and not real else None)
    prev, context = (entry[0], str(entry[1])) if entry else (None, "")
    new_line = prev is None or (tok.line or 0) > (prev.end_line or 0)
    message = f"unexpected {_describe(tok, eof)}"
    opener = ind.brackets[-1] if ind.brackets else None
    closer = _PAIR[str(opener)] if opener is not None else ""
    if tok.type in _CLOSE and tok != closer:
        if opener is None:
            return TileSyntaxError(f"unmatched '{tok}'", span, hint="remove it or add the opening bracket before it")
        return TileSyntaxError(f"'{tok}' does not match '{opener}'", span,
                               hint=f"'{opener}' opened at {_at(source, opener)} is closed by '{closer}'")
    if opener is not None and (eof or new_line):
        hint = f"unbalanced {_BRACKET_WORD[str(opener)]}: '{opener}' opened at {_at(source, opener)} is never closed"
    elif tok.type == "_INDENT":
        hint = "indent only the body of a 'def', 'for' or 'example' block, one level deeper than its header"
    elif "_INDENT" in expected:
        message = "expected an indented block"
        hint = f"indent the body of the {_BLOCKS.get(context, repr(context) + ' block')} under its header"
    elif ":" in expected and context in _HEADERS and opener is None:
        hint = f"expected ':' after {_HEADERS[context]}"
    elif "in" in expected and context == "for" and opener is None:
        hint = "expected 'in' after the loop variables: for m, n in tiles(M, N):"
    elif prev is not None and prev == "async" and tok == "def":
        hint = "kernels cannot be 'async': remove it"
    elif tok == "@" and new_line:
        hint = "a .tile spec has no decorators: start each kernel with 'def name(params):'"
    elif new_line and opener is None and not eof and ("pass" in expected or "def" in expected):
        hint = f"a statement cannot start with {_describe(tok, False).replace('name ', '')}"
    elif "NAME" in expected and "(" in expected:
        hint = f"expected an expression after '{prev}'" if prev is not None else "expected an expression"
    elif expected == {"("} and context == "def":
        hint = "expected '(' and the parameter list after the kernel name: def k(x: Tensor[M, T]):"
    elif expected == {"("} and context == "example":
        hint = "expected '(' and the bindings after the kernel name: example k(M=37, T=f16):"
    else:
        hint = _expected_hint(expected, closer)
    return TileSyntaxError(message, span, hint=hint)


def _expected_hint(expected: set[str], closer: str) -> str:
    if closer in expected:  # inside brackets, commas and the closer matter most
        return f"expected ',' or '{closer}'" if "," in expected else f"expected '{closer}'"
    if "_NEWLINE" in expected:
        return "expected an operator or the end of the line" if "+" in expected else "expected the end of the line"
    order = [":", ",", "=", "(", "in", "import", "else", "NAME"]
    shown = [_REGEX_TERMINALS.get(w, f"'{w}'") for w in order if w in expected][:4]
    if not shown:
        return "a spec holds 'def' kernels and 'example' blocks made of Python-style statements"
    if len(shown) == 1:
        return f"expected {shown[0]}"
    return f"expected {', '.join(shown[:-1])} or {shown[-1]}"


def _at(source: Source, tok: Token) -> str:
    span = _point(source, tok.line or 1, tok.column or 1)
    return f"line {span.line} col {span.col}"
