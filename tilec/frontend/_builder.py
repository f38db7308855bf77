"""Turn the Lark parse tree of :file:`grammar.lark` into :mod:`tilec.frontend.ast` nodes.

Internal to :mod:`tilec.frontend.parser`.  Besides building nodes this module
applies Python's operator precedence to the grammar's flat operator chains and
rejects, with a located :class:`TileSyntaxError`, the syntax that parses but can
never be valid (``*args``, ``a = b = c``, positional ``example`` bindings, ...).
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import Any

from lark import Token, Tree

from tilec.errors import Source, Span, TileSyntaxError
from tilec.frontend import ast

_Tree = Tree[Any]
_Node = _Tree | Token

# Python's binding strength of binary and prefix operators (higher binds tighter)
_COMPARE = 4
_BINARY = {"or": 1, "and": 2, "|": 5, "^": 6, "&": 7, "<<": 8, ">>": 8, "+": 9, "-": 9,
           "*": 10, "/": 10, "//": 10, "%": 10, "@": 10,
           **dict.fromkeys(("<", ">", "==", ">=", "<=", "!=", "in", "not in", "is", "is not"), _COMPARE)}
_PREFIX = {"not": 3, "+": 11, "-": 11, "~": 11}

_UNSUPPORTED_STMTS = {"return_stmt": "return", "break_stmt": "break", "continue_stmt": "continue",
                      "del_stmt": "del", "assert_stmt": "assert", "global_stmt": "global",
                      "nonlocal_stmt": "nonlocal", "raise_stmt": "raise", "import_stmt": "import",
                      "yield_stmt": "yield", "funcdef": "def", "if_stmt": "if", "while_stmt": "while",
                      "with_stmt": "with", "try_stmt": "try", "class_stmt": "class"}
_UNSUPPORTED_EXPRS = {"string": "string literal", "imag": "complex literal", "ellipsis": "'...'",
                      "ternary": "conditional expression 'a if c else b'", "lambdef": "lambda",
                      "genexp": "generator expression", "genexp_arg": "generator expression",
                      "listcomp": "list comprehension", "braces": "dict or set literal",
                      "bracecomp": "dict or set comprehension"}
_PARAMS_HINT = "a kernel takes a fixed list of named parameters, e.g. def k(x: Tensor[M, N, T], eps: f32):"


def build_module(tree: _Tree, source: Source) -> ast.Module:
    """The module for the parse tree of ``source`` (raises TileSyntaxError for invalid constructs)."""
    return _Builder(source).module(tree)


def _extent(node: _Node) -> tuple[int, int, int, int]:
    if isinstance(node, Token):
        return node.line or 1, node.column or 1, node.end_line or 1, node.end_column or 1
    meta = node.meta
    return meta.line, meta.column, meta.end_line, meta.end_column


def _kids(node: _Tree) -> list[Any]:
    """A node's children without Lark's placeholders for absent optional parts."""
    return [c for c in node.children if c is not None]


class _Builder:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.exprs: dict[str, Callable[[_Tree], ast.Expr]] = {
            "name": lambda t: ast.Name(self.ident(t.children[0]), self.span(t)),
            "int": self.int_,
            "float": lambda t: ast.Float(float(str(t.children[0]).replace("_", "")), self.span(t)),
            "none": lambda t: ast.NoneLit(self.span(t)),
            "true": lambda t: ast.Bool(True, self.span(t)),
            "false": lambda t: ast.Bool(False, self.span(t)),
            "paren": lambda t: self.expr(t.children[0]),
            "tuple": lambda t: ast.TupleExpr(self.exprs_of(t), self.span(t)),
            "tuple_noparen": lambda t: ast.TupleExpr(self.exprs_of(t), self.span(t)),
            "list": lambda t: ast.ListExpr(self.exprs_of(t), self.span(t)),
            "chain": self.operation,
            "prefixed": self.operation,
            "power": lambda t: ast.BinOp("**", self.expr(t.children[0]), self.expr(t.children[1]), self.span(t)),
            "call": self.call,
            "subscript": lambda t: ast.Subscript(self.expr(t.children[0]), self.exprs_of(t.children[1]),
                                                 self.span(t)),
            "slice": self.slice,
            "attribute": lambda t: ast.Attribute(self.expr(t.children[0]), self.ident(t.children[1]),
                                                 self.span(t), self.span(t.children[1])),
        }

    # ------------------------------------------------------------ helpers

    def span(self, first: _Node, last: _Node | None = None) -> Span:
        """The span from the start of ``first`` to the end of ``last`` (default: ``first``)."""
        line, col, _, _ = _extent(first)
        _, _, end_line, end_col = _extent(first if last is None else last)
        dl, dc = self.source.first_line - 1, self.source.col_offset
        return Span(self.source, line + dl, col + dc, end_line + dl, end_col + dc)

    def error(self, message: str, node: _Node, hint: str) -> TileSyntaxError:
        return TileSyntaxError(message, self.span(node), hint=hint)

    def ident(self, tok: Any) -> str:
        """The text of a NAME token used as a name (Python keywords are rejected)."""
        if keyword.iskeyword(tok):
            raise self.error(f"'{tok}' is a reserved word and cannot be used as a name", tok,
                             hint="choose another name")
        return str(tok)

    # ---------------------------------------------------------- top level

    def module(self, tree: _Tree) -> ast.Module:
        kernels: list[ast.KernelDef] = []
        examples: list[ast.Example] = []
        for index, child in enumerate(tree.children):
            if child.data == "funcdef":
                kernels.append(self.kernel(child))
            elif child.data == "example":
                examples.append(self.example(child))
            elif not (index == 0 and self.is_docstring(child)):
                raise self.error("only 'def' kernels and 'example' blocks may appear at the top level",
                                 child.children[0],  # the statement's header, or its first simple statement
                                 hint="indent this statement into a kernel body")
        return ast.Module(tuple(kernels), tuple(examples))

    def kernel(self, tree: _Tree) -> ast.KernelDef:
        header, suite = tree.children
        name, params, returns = header.children
        if returns is not None:
            raise self.error("a kernel has no return annotation", returns,
                             hint="remove '-> ...': kernels write their results into tensor parameters")
        params_ = tuple(self.param(p) for p in params.children) if params is not None else ()
        return ast.KernelDef(self.ident(name), params_, self.suite(suite, docstring=True), self.span(header),
                             self.span(name))

    def param(self, tree: _Tree) -> ast.Param:
        kind = tree.data
        if kind == "param":
            name, *annotation = tree.children
            return ast.Param(self.ident(name), self.expr(annotation[0]) if annotation else None, self.span(tree))
        if kind == "default_param":
            raise self.error(f"parameter '{tree.children[0]}' has a default value", tree.children[2],
                             hint="kernel parameters have no defaults; give sizes in an 'example' block "
                                  "or when launching the kernel")
        if kind == "star_param":
            what = "'*' parameters are" if tree.children[0] is not None else "the keyword-only marker '*' is"
        else:
            what = "'**' parameters are" if kind == "starstar_param" else "the positional-only marker '/' is"
        raise self.error(f"{what} not supported", tree, hint=_PARAMS_HINT)

    def example(self, tree: _Tree) -> ast.Example:
        header, suite = tree.children
        word, name, args = header.children
        if word != "example":
            raise self.error(f"expected 'def' or 'example', found '{word}'", word,
                             hint="the top level of a spec holds 'def' kernels and 'example NAME(...):' blocks")
        bindings = []
        for arg in _kids(args) if args is not None else []:
            if not (isinstance(arg, Tree) and arg.data == "kwarg"):
                raise self.error("an example binds sizes and parameters by name", arg,
                                 hint="write NAME=value, e.g. example gemm(M=37, T=f16):")
            bindings.append(self.keyword(arg))
        return ast.Example(self.ident(name), tuple(bindings), self.suite(suite, docstring=True), self.span(header),
                           self.span(name))

    # ---------------------------------------------------------- statements

    def suite(self, tree: _Tree, docstring: bool = False) -> tuple[ast.Stmt, ...]:
        """A block's statements; with ``docstring``, a leading string statement is dropped."""
        children = tree.children
        if docstring and children and self.is_docstring(children[0]):
            children = children[1:] if len(children) > 1 else []
        return tuple(stmt for child in children for stmt in self.stmt(child))

    @staticmethod
    def is_docstring(stmt: _Tree) -> bool:
        if stmt.data != "simple_stmt" or len(_kids(stmt)) != 1:
            return False
        small = stmt.children[0]
        return small.data == "expr_stmt" and isinstance(small.children[0], Tree) \
            and small.children[0].data == "string"

    def stmt(self, tree: _Tree) -> list[ast.Stmt]:
        kind = tree.data
        if kind == "simple_stmt":
            return [self.small_stmt(child) for child in _kids(tree)]
        if kind == "for_stmt":
            header, suite = tree.children
            targets, iter_ = header.children
            names = []
            for target in _kids(targets):
                if not (isinstance(target, Tree) and target.data == "name"):
                    raise self.error("a loop variable must be a plain name", target,
                                     hint="write 'for m, n in tiles(M, N):'")
                names.append(ast.Name(self.ident(target.children[0]), self.span(target)))
            return [ast.For(tuple(names), self.expr(iter_), self.suite(suite), self.span(header))]
        return [ast.UnsupportedStmt(_UNSUPPORTED_STMTS[kind], self.span(tree.children[0]))]

    def small_stmt(self, tree: _Tree) -> ast.Stmt:
        kind, span = tree.data, self.span(tree)
        if kind == "expr_stmt":
            value = tree.children[0]
            if isinstance(value, Tree) and value.data == "ellipsis":
                return ast.Pass(span)  # `...` as a placeholder body, like `pass`
            return ast.ExprStmt(self.expr(value), span)
        if kind == "pass_stmt":
            return ast.Pass(span)
        if kind == "assign":
            target, _, value, *more = tree.children
            if more:
                raise self.error("chained assignment 'a = b = c' is not supported", more[0],
                                 hint="assign one target per statement")
            self.single_target(target, "tuple-unpacking assignment is not supported",
                               "assign each name in its own statement")
            return ast.Assign(self.expr(target), self.expr(value), span)
        if kind == "aug_assign":
            target, op, value = tree.children
            self.single_target(target, f"'{op}' needs a single target", "update one name or element at a time")
            return ast.AugAssign(self.expr(target), str(op)[:-1], self.expr(value), span)
        if kind == "ann_assign":
            raise self.error("annotated assignment is not supported", tree.children[1],
                             hint="drop the annotation: write 'x = ...'")
        return ast.UnsupportedStmt(_UNSUPPORTED_STMTS[kind], span)

    def single_target(self, target: _Node, message: str, hint: str) -> None:
        if isinstance(target, Tree) and target.data in ("tuple_noparen", "tuple", "list"):
            raise self.error(message, target, hint=hint)

    # --------------------------------------------------------- expressions

    def expr(self, node: _Node) -> ast.Expr:
        if not isinstance(node, Tree):  # never: every atom is a named tree
            raise self.error("invalid expression", node, hint="check the syntax here")
        build = self.exprs.get(node.data)
        if build is not None:
            return build(node)
        return ast.Unsupported(_UNSUPPORTED_EXPRS.get(node.data, node.data), self.span(node))

    def exprs_of(self, tree: _Tree) -> tuple[ast.Expr, ...]:
        return tuple(self.expr(child) for child in _kids(tree))

    def int_(self, tree: _Tree) -> ast.Expr:
        text = str(tree.children[0])
        try:
            return ast.Int(int(text, 0), self.span(tree))
        except ValueError:
            raise self.error(f"leading zeros are not allowed in the integer '{text}'", tree,
                             hint="write it without leading zeros (or as an 0o... octal literal)") from None

    def slice(self, tree: _Tree) -> ast.Expr:
        lower, upper, step = (None if c is None else self.expr(c) for c in tree.children)
        return ast.Slice(lower, upper, step, self.span(tree))

    def call(self, tree: _Tree) -> ast.Expr:
        func, arguments = tree.children
        args: list[ast.Expr] = []
        keywords: list[ast.Keyword] = []
        for arg in _kids(arguments) if arguments is not None else []:
            if isinstance(arg, Tree) and arg.data == "star_arg":
                raise self.error("argument unpacking with '*' or '**' is not supported", arg,
                                 hint="pass each argument explicitly")
            if isinstance(arg, Tree) and arg.data == "kwarg":
                word = self.keyword(arg)
                if any(k.name == word.name for k in keywords):
                    raise self.error(f"keyword argument '{word.name}' is repeated", arg.children[0],
                                     hint="pass each keyword once")
                keywords.append(word)
            elif keywords:
                raise self.error("positional argument follows keyword argument", arg,
                                 hint="put positional arguments before keyword arguments")
            else:
                args.append(self.expr(arg))
        return ast.Call(self.expr(func), tuple(args), tuple(keywords), self.span(tree))

    def keyword(self, tree: _Tree) -> ast.Keyword:
        name, value = tree.children
        return ast.Keyword(self.ident(name), self.expr(value), self.span(tree))

    def operation(self, tree: _Tree) -> ast.Expr:
        """Group a flat operator chain by Python's precedence (precedence climbing)."""
        items: list[tuple[str, Any]] = []  # ("pre", token) | ("op", (text, token)) | ("val", tree)
        self.flatten(tree, items)
        expr, _, end = self.climb(items, 0, 0)
        assert end == len(items)
        return expr

    def flatten(self, node: _Node, items: list[tuple[str, Any]]) -> None:
        if isinstance(node, Tree) and node.data == "prefixed":
            items.append(("pre", node.children[0]))
            self.flatten(node.children[1], items)
        elif isinstance(node, Tree) and node.data == "chain":
            children = node.children
            i = 0
            while i < len(children):
                child = children[i]
                if isinstance(child, Token):  # a binary operator; `not in` and `is not` are two tokens
                    text = str(child)
                    if i + 1 < len(children) and isinstance(children[i + 1], Token):
                        i += 1
                        text = f"{text} {children[i]}"
                    items.append(("op", (text, child)))
                else:
                    self.flatten(child, items)
                i += 1
        else:
            items.append(("val", node))

    def climb(self, items: list[tuple[str, Any]], pos: int, min_prec: int) -> tuple[ast.Expr, _Node, int]:
        """Parse ``items[pos:]`` binding operators of precedence >= ``min_prec``.

        Returns the expression, the last node it covers (for its span) and the next position."""
        kind, first = items[pos]
        if kind == "pre":
            prec = _PREFIX[str(first)]
            if prec < min_prec:
                raise self.error(f"'{first}' cannot appear here without parentheses", first,
                                 hint=f"write ({first} ...) around the operand")
            operand, last, pos = self.climb(items, pos + 1, prec)
            left: ast.Expr = ast.UnaryOp(str(first), operand, self.span(first, last))
        else:
            left, last, pos = self.expr(first), first, pos + 1
        while pos < len(items):
            op, _ = items[pos][1]
            prec = _BINARY[op]
            if prec < min_prec:
                break
            if prec == _COMPARE:
                ops, operands = [], [left]
                while pos < len(items) and _BINARY[items[pos][1][0]] == _COMPARE:
                    ops.append(items[pos][1][0])
                    right, last, pos = self.climb(items, pos + 1, prec + 1)
                    operands.append(right)
                left = ast.Compare(tuple(ops), tuple(operands), self.span(first, last))
            else:
                right, last, pos = self.climb(items, pos + 1, prec + 1)
                left = ast.BinOp(op, left, right, self.span(first, last))
        return left, last, pos
