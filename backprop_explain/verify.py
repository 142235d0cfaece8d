"""Verify hand calculations: judge each answer, carry errors forward, diagnose the slip.

The *catalogue* names every quantity of a worked solution by the keys derivation.py
uses (``out_{o1}``, ``dout_{o1}/dy_{o1}``, ``dE_{tot}/dwo_{1,1}``, ``wo_{1,1}'``,
``E_{tot}'``) and gives each a SymPy formula in terms of other keys, built from the
graph (node expressions, SymPy's local partials, chain-rule sums, the SGD update).
One evaluator walks those formulas in dependency order; fed nothing it reproduces
the solution, fed the student's values it recomputes each quantity from the
student's own earlier answers (error carried forward), fed altered formulas it
replays the usual slips (log base 10, σ instead of σ′, …) to name a mistake.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal, InvalidOperation
from functools import cached_property, lru_cache

import sympy as sp
from sympy.printing.str import StrPrinter

from .activations import ACTIVATIONS
from .answers import Answer, parse_number, read_answers
from .derivation import derive
from .errors import SpecError
from .graph import check_worked_solution
from .intervals import Interval, Unsupported, compile_interval
from .limits import check_verify
from .keys import adjoint_key, local_key, updated_key
from .losses import LOSSES
from .nodes import (ACTIVATION, GIVEN_KINDS, INPUT, LEAF_KINDS, LOSS, LOSS_TERM, PARAMETER,
                    PRE_ACTIVATION, TARGET)
from .optimizers import OPTIMIZERS
from .partials import dummy, rename
from .spec import NetworkSpec

STATUSES = ("correct", "wrong", "consistent", "unknown_key")
LEARNING_RATE = "η"
_LEARNING_RATE_ALIASES = ("η", "eta", "lr", "learningrate", "learning-rate")


# ---------------------------------------------------------------------------
# The catalogue of quantities


@dataclass
class Quantity:
    key: str
    kind: str  # input target parameter constant forward local adjoint path update after
    meaning: tuple[str, dict]  # phrase id in [verify.meaning] and its values
    formula: sp.Expr | None  # in the symbols of other keys; None for given data
    deps: list[str]  # keys of the formula's symbols
    value: float  # the true value
    node: str | None = None  # the graph node (forward, after) or parameter (update)
    pair: tuple[str, str] | None = None  # (numerator, denominator) of a derivative


class _KeyPrinter(StrPrinter):
    """sstr with derivative keys in parentheses, so products stay readable."""

    def _print_Symbol(self, expr):
        return f"({expr.name})" if "/" in expr.name else expr.name


def formula_text(expr: sp.Expr | None) -> str:
    return "" if expr is None else _KeyPrinter({"order": "none"}).doprint(expr)


def _frac_to_slash(text: str) -> str:
    """``\\frac{∂E}{∂w}`` (as a sheet writes a partial) → ``∂E/∂w``."""
    match = re.search(r"\\[dt]?frac\s*\{", text)
    if not match:
        return text
    groups, i = [], match.end() - 1
    for _ in range(2):
        while i < len(text) and text[i] == " ":
            i += 1
        if i >= len(text) or text[i] != "{":
            return text
        depth, start = 0, i
        for j in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                groups.append(text[start + 1:j])
                i = j + 1
                break
        else:
            return text
    return text[:match.start()] + f"{groups[0]}/{groups[1]}" + _frac_to_slash(text[i:])


@lru_cache(maxsize=1 << 16)  # every catalogue indexes its keys: a sheet's variants share them
def normalize_key(text: str) -> str:
    """What survives of a key once the obvious variations are forgiven."""
    t = _frac_to_slash(str(text).strip()).replace("\\partial", "d").replace("∂", "d")
    t = t.replace("\u2212", "-").replace("’", "'").replace("′", "'").replace("\\prime", "'")
    t = t.replace("\\eta", "η")
    primed = "'" in t
    t = re.sub(r"[\s{}_*$\\'^]", "", t)
    return t + ("'" if primed else "")


_FUNCTIONS: dict = {}  # (formula, its keys) → compiled: float and interval evaluation
_INTERVAL_FUNCTIONS: dict = {}
_MISSING = object()


def _float_function(expr: sp.Expr, deps: list[str]):
    # identifiers first, in the keys' order, the arrangement kept: lambdify would rewrite
    # the whole expression once per key that is not one (dE/dw_{1,1})
    plain = [dummy(k) for k in range(len(deps))]
    named = rename(expr, {sp.Symbol(d): v for d, v in zip(deps, plain)})
    return sp.lambdify(plain, named, modules="math")


def _bounded_function(expr: sp.Expr, deps: list[str]):
    try:
        return compile_interval(expr, [sp.Symbol(d) for d in deps])
    except Unsupported:
        return None


@lru_cache(maxsize=1 << 16)  # a sheet's variants share their formulas (one graph)
def _free_names(expr: sp.Expr) -> tuple[str, ...]:
    return tuple(sorted((s.name for s in expr.free_symbols), key=str))


class _Structure:
    """What depends only on a catalogue's keys and formulas, in order: compiled formulas,
    each key's upstream keys and siblings, each slip's plan. The catalogues of one graph
    with the same keys and formulas (a sheet's variants) share one."""

    def __init__(self, signature: tuple | None):
        self.signature = signature  # ((key, formula), …) in order; None: not shared
        self.plans: dict[tuple, tuple] = {}  # (key, altered formula or None) → (function, keys)
        self.upstream: dict[str, frozenset[str]] = {}
        self.siblings: dict[str, list[str]] = {}
        self.altered: dict[int, tuple] = {}  # id(formulas) → (formulas, plan, its run)
        self.reaching: dict[str, tuple] = {}  # key → (variants, the slips reaching it)
        self.reads: dict[str, tuple[str, ...]] = {}  # key → what its evaluation looks up
        self.in_order: bool | None = None
        self.plain: tuple | None = None  # the plan of every formula and its run (evaluate({}))
        self.slip_shapes: dict[str, _SlipShape] = {}

    @staticmethod
    def of(graph, signature: tuple) -> "_Structure":
        """The last graph's structure when this signature is its, else a new one."""
        last = _STRUCTURES.get("last")
        if last is not None and last[0] is graph and last[1].signature == signature:
            return last[1]
        structure = _Structure(signature)
        _STRUCTURES["last"] = (graph, structure)
        return structure


@lru_cache(maxsize=1 << 14)  # one object per formula: a sheet's catalogues compare them fast
def _chain_sum(factors: tuple[tuple[str, str], ...]) -> sp.Expr:
    """Σ upper·local over (upper key, local key) pairs: the chain rule at one node."""
    terms = [sp.Symbol(upper) * sp.Symbol(local) for upper, local in factors]
    return sp.Add(*terms, evaluate=False) if len(terms) > 1 else (terms[0] if terms
                                                                   else sp.Integer(0))


@lru_cache(maxsize=1 << 14)
def _primed(expr: sp.Expr, renamed: tuple[tuple[sp.Symbol, str], ...]) -> sp.Expr:
    """A node's formula after the update: its parents' symbols by their primed ones
    ((symbol, primed key) pairs)."""
    return expr.xreplace({symbol: sp.Symbol(primed) for symbol, primed in renamed})


_STRUCTURES: dict[str, tuple] = {}  # the last graph's structure (one sheet's graph)
_FIRST_STEPS: dict[tuple, list] = {}


def _first_step(spec: NetworkSpec, parameter: str, loss: str) -> list[tuple]:
    """The optimizer's first update of ``parameter`` as formulas (Optimizer.first_step),
    made once per optimizer, parameter and settings: the catalogues of a sheet's variants
    get the same formula objects (compared by identity, not term by term)."""
    cached = (spec.optimizer, parameter, loss, repr(spec.optimizer_settings))
    steps = _FIRST_STEPS.get(cached)
    if steps is None:
        if len(_FIRST_STEPS) > 4096:
            _FIRST_STEPS.clear()
        steps = _FIRST_STEPS[cached] = OPTIMIZERS[spec.optimizer].first_step(
            parameter, sp.Symbol(parameter), sp.Symbol(LEARNING_RATE),
            sp.Symbol(adjoint_key(loss, parameter)), spec.optimizer_settings)
    return steps


class _LastGraph:
    """A table that depends on the graph alone, kept for the last graph asked (the
    catalogues of a sheet's variants share one graph)."""

    def __init__(self):
        self.graph, self.table = None, {}

    def of(self, graph) -> dict:
        if self.graph is not graph:
            self.graph, self.table = graph, {}
        return self.table


_DESCENDANTS = _LastGraph()  # node → every node downstream of it
_INVERSES = _LastGraph()  # the activations' inverses (Catalog._activation_inverses)
_SLIPS_OF_GRAPH: dict[str, tuple] = {}  # the last graph's slip formulas (one sheet's graph)


def _straight_line(plan: list[tuple]) -> tuple:
    """(run, reads): the plan's (key, compiled function, its keys) steps as one function of
    the values of ``reads`` (the keys it reads before computing them), returning each step's
    result in order: the same functions on the same arguments, without a dictionary between
    them. Its code holds only our own names (p0, v0, f0), never a key."""
    reads, names, functions, lines = [], {}, {}, []
    for k, (key, function, deps) in enumerate(plan):
        args = []
        for dep in deps:
            if dep not in names:  # read before any step computes it: an argument
                names[dep] = f"p{len(reads)}"
                reads.append(dep)
            args.append(names[dep])
        functions[f"f{k}"] = function
        lines.append(f"    v{k} = float(f{k}({', '.join(args)}))")  # as _float_result
        names[key] = f"v{k}"
    results = "".join(f"v{k}, " for k in range(len(plan)))
    source = (f"def run({', '.join(f'p{k}' for k in range(len(reads)))}):\n" + "\n".join(lines)
              + f"\n    return ({results})\n")
    exec(source, functions)  # noqa: S102 (our own names and functions only)
    return functions["run"], reads


def _finite_floats(run, args: list) -> tuple | None:
    """``run(*args)`` (a _straight_line function) when every step gives a finite real, as
    _float_result takes it; else None (a step outside its domain, a value None, complex or
    not finite: the steps are then evaluated one at a time)."""
    try:
        results = run(*args)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None
    return results if math.isfinite(sum(results)) else None


def _float_result(function, args: list[float]) -> float | None:
    """A compiled formula's value, None outside its domain or when not a finite real."""
    try:
        result = function(*args)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None
    if isinstance(result, complex):
        return None
    result = float(result)
    return result if math.isfinite(result) else None


class Catalog:
    """Every quantity of the worked solution of one SGD step, by key, in dependency order."""

    def __init__(self, spec: NetworkSpec, solution=None):
        """``solution``: the spec's derivation when already made (a sheet's variant)."""
        from .training import first_step
        self.spec = spec = first_step(spec)  # several steps: the first, as explained
        self.solution = solution or derive(spec)
        self.graph = self.solution.graph
        self.loss = self.graph.loss.name
        self.quantities: dict[str, Quantity] = {}
        self._functions = {}  # compiled formulas (see _compiled)
        self._interval_functions = {}
        self._inverses = {}
        self._descendants = _DESCENDANTS.of(self.graph)
        self._formula_deps: dict[sp.Expr, list[str]] = {}
        self._shared = _Structure(None)  # this catalogue's own until it is complete
        self._complete = False
        self._renamed: dict[str, str] = {}  # several examples: example 1's keys, renamed
        self._combined: list[str] = []  # … and the step's, combining the examples'
        example = self.solution.example
        values = example.values
        graph = self.graph

        for node in graph.nodes.values():
            if node.kind in LEAF_KINDS:
                self._add(Quantity(node.name, node.kind, (node.kind, {"name": node.name}),
                                   None, [], values[node.name], node=node.name))
        self._add(Quantity(LEARNING_RATE, "constant", ("learning_rate", {}), None, [],
                           spec.learning_rate))
        for node in graph.nodes.values():
            if node.expr is not None:
                self._add(Quantity(node.name, "forward", self._forward_meaning(node),
                                   node.expr, self._deps(node.expr), values[node.name],
                                   node=node.name))
        for child, parent in self._edges():
            key = local_key(child, parent)
            expr = self._local_formula(child, parent)
            self._add(Quantity(key, "local", ("local", {"child": child, "parent": parent}),
                               expr, self._deps(expr), example.local_partials[key],
                               pair=(child, parent)))
        for name in reversed(list(graph.nodes)):
            if graph.nodes[name].kind not in GIVEN_KINDS + (LOSS,):
                self.derivative(self.loss, name)
        several = len(self.solution.examples) > 1
        if several:
            self._combine_examples()
        optimizer = OPTIMIZERS[spec.optimizer]
        for update in self.solution.updates:
            theta = sp.Symbol(update.parameter)
            meaning = ("update", {"name": update.parameter, "optimizer": optimizer.title})
            if update.frozen:
                self._add(Quantity(update.key, "update", meaning, theta, [update.parameter],
                                   update.new, node=update.parameter))
                continue
            # the optimizer's state first (velocity, moments), then θ' from it
            steps = _first_step(spec, update.parameter, self.loss)
            values = {}
            for key, (phrase, words), expr in steps:
                words = dict(words)  # this catalogue's own
                kind = "update" if key == update.key else "state"
                if kind == "update":
                    words = dict(words, optimizer=optimizer.title)
                deps = self._deps(expr)
                quantity = self._add(Quantity(key, kind, (phrase, words), expr, deps, 0.0,
                                              node=update.parameter))
                if kind == "update":
                    quantity.value = update.new
                else:
                    quantity.value = self._evaluate_one(quantity, {
                        d: values.get(d, self.quantities[d].value if d in self.quantities
                                      else None) for d in deps})
                values[key] = quantity.value
        for name, value in self.solution.buffers.items():  # running statistics
            if name not in self.quantities:
                self._add(Quantity(name, "buffer", ("buffer", {"name": name}), None, [], value,
                                   node=name))
        for layer in spec.layers:
            for name, expr in layer.buffer_updates(graph).items():
                self._add(Quantity(updated_key(name), "buffer_update",
                                   ("buffer_update", {"name": name}), expr, self._deps(expr),
                                   self.solution.buffers_after[name], node=name))
        after = {s.name: s.value for s in self.solution.forward_after[0]}
        for node in graph.nodes.values():
            if node.expr is not None:
                expr = self._after_formula(node)
                self._add(Quantity(updated_key(node.name), "after",
                                   ("after", {"name": node.name}), expr, self._deps(expr),
                                   after[node.name], node=node.name))
        if several:
            self._combine_losses_after()
        self._inverses = self._activation_inverses()
        self._index()
        self._shared = _Structure.of(self.graph, tuple(
            (key, quantity.formula) for key, quantity in self.quantities.items()))

    def textbook(self, quantity: Quantity) -> sp.Expr | None:
        """A local derivative of an activation in the textbook's last form, in the keys
        of the outputs (out_{o1}·(1 − out_{o1})); None for any other quantity."""
        if quantity.kind != "local":
            return None
        child, parent = quantity.pair
        node = self.graph.nodes[child]
        if node.kind != ACTIVATION:
            return None
        entry = ACTIVATIONS[node.activation]
        ys = [self.graph.symbol(p) for p in node.parents]
        siblings = [n for n in self.graph.of_kind(ACTIVATION) if n.layer == node.layer]
        outs = [node.symbol] if entry.elementwise else [n.symbol for n in siblings]
        j = 0 if entry.elementwise else siblings.index(node)
        k = 0 if entry.elementwise else node.parents.index(parent)
        slope = getattr(self.spec.layers[node.layer - 1], "negative_slope", 0.01)
        forms = entry.textbook(ys, outs, j, k, slope)
        return forms[-1] if forms else None

    # Several examples in the step ---------------------------------------------
    def _combine_examples(self):
        """One graph holds example 1's numbers: its loss and gradients are renamed L^{(1)}
        and dL^{(1)}/dθ; each other example's loss and gradients are numbers (the worked
        solution's table); the step's loss L and gradients dL/dθ combine them (mean or sum),
        and the update uses those (the keys of a sheet and of --format json)."""
        L, examples = self.loss, self.solution.examples
        parameters = [p.name for p in self.graph.parameters]
        first = example_key(L, 1)
        self._rename({L: first, **{adjoint_key(L, p): adjoint_key(first, p) for p in parameters}})
        self.quantities[first].meaning = ("loss_of_example", {"name": L, "k": 1})
        for k, example in enumerate(examples[1:], start=2):
            self._add(Quantity(example_key(L, k), "example",
                               ("loss_of_example", {"name": L, "k": k}), None, [], example.loss))
        self._add_combined(L, [example_key(L, k) for k in range(1, len(examples) + 1)],
                           ("step_loss", {"name": L}), self.solution.loss, node=L)
        for p in parameters:
            self.quantities[adjoint_key(first, p)].meaning = (
                "gradient_of_example", {"top": L, "bottom": p, "k": 1})
            for k, example in enumerate(examples[1:], start=2):
                self._add(Quantity(adjoint_key(example_key(L, k), p), "example",
                                   ("gradient_of_example", {"top": L, "bottom": p, "k": k}),
                                   None, [], example.gradients[p]))
            self._add_combined(adjoint_key(L, p), [adjoint_key(example_key(L, k), p)
                                                   for k in range(1, len(examples) + 1)],
                               ("step_gradient", {"top": L, "bottom": p}),
                               self.solution.gradients[p], kind="adjoint", pair=(L, p))

    def _combine_losses_after(self):
        """L' of the step from each example's loss after the update."""
        L = self.loss
        first = example_key(L, 1)
        self._rename({updated_key(L): updated_key(first)})
        self.quantities[updated_key(first)].meaning = ("loss_after_of_example", {"name": L, "k": 1})
        for k, steps in enumerate(self.solution.forward_after[1:], start=2):
            value = next(s.value for s in steps if s.name == L)
            self._add(Quantity(updated_key(example_key(L, k)), "example",
                               ("loss_after_of_example", {"name": L, "k": k}), None, [], value))
        self._add_combined(updated_key(L), [updated_key(example_key(L, k)) for k in
                                            range(1, len(self.solution.examples) + 1)],
                           ("step_loss_after", {"name": L}), self.solution.loss_after,
                           kind="after", node=L)

    def _add_combined(self, key, parts, meaning, value, kind="combined", **extra):
        total = sp.Add(*[sp.Symbol(p) for p in parts])
        expr = total / len(parts) if self.spec.reduction == "mean" else total
        self._add(Quantity(key, kind, meaning, expr, self._deps(expr), value, **extra))
        self._combined.append(key)

    def _rename(self, names: dict[str, str]) -> None:
        """Quantities given new keys, in place (no formula refers to them yet)."""
        self._shared = _Structure(None)  # what was known by the old keys
        self._renamed.update({old: new for old, new in names.items()})
        quantities = {}
        for key, quantity in self.quantities.items():
            if key in names:
                quantity.key = key = names[key]
            quantities[key] = quantity
        self.quantities = quantities

    # Building ------------------------------------------------------------
    def _add(self, quantity: Quantity) -> Quantity:
        self.quantities.setdefault(quantity.key, quantity)
        return self.quantities[quantity.key]

    @staticmethod
    def _deps(expr) -> list[str]:
        return list(_free_names(expr)) if expr is not None else []

    def _edges(self):
        for node in self.graph.nodes.values():
            for parent in node.parents:
                if self.graph.nodes[parent].kind not in GIVEN_KINDS:
                    yield node.name, parent

    def _forward_meaning(self, node):
        if node.kind == ACTIVATION:
            return ("activation", {"name": node.name, "function": node.activation,
                                   "of": ", ".join(node.parents)})
        if node.kind == PRE_ACTIVATION and self.spec.layers[node.layer - 1].without_bias:
            return ("pre_activation_without_bias", {"name": node.name})
        return (node.kind, {"name": node.name})

    def _local_formula(self, child: str, parent: str, expr: sp.Expr | None = None) -> sp.Expr:
        """∂child/∂parent by SymPy, of the child's expression or of an altered one."""
        if expr is None:
            return self.graph.local_partial(child, parent)
        return sp.diff(expr, self.graph.symbol(parent))

    def _activation_inverses(self) -> dict[str, tuple[str, str, sp.Expr]]:
        """∂out/∂y → (y, out, y as a formula of out) for the activations that have an
        inverse (σ: y = ln(out/(1 − out)))."""
        table = _INVERSES.of(self.graph)  # the graph's alone: a sheet's variants share it
        if "inverses" in table:
            return table["inverses"]
        inverses = {}
        for node in self.graph.nodes.values():
            if node.kind != ACTIVATION or len(node.parents) != 1:
                continue
            inverse = ACTIVATIONS[node.activation].inverse(node.symbol)
            if inverse is not None:
                parent = node.parents[0]
                inverses[local_key(node.name, parent)] = (parent, node.name, inverse)
        table["inverses"] = inverses
        return inverses

    def _after_formula(self, node, expr: sp.Expr | None = None) -> sp.Expr:
        renamed = tuple((self.graph.symbol(p), updated_key(p)) for p in node.parents
                        if self.graph.nodes[p].kind not in (INPUT,) + GIVEN_KINDS)
        return _primed(node.expr if expr is None else expr, renamed)

    def descendants(self, name: str) -> set[str]:
        if name not in self._descendants:
            found = set()
            for child in self.graph.children[name]:
                found.add(child)
                found |= self.descendants(child)
            self._descendants[name] = found
        return self._descendants[name]

    def derivative(self, top: str, bottom: str) -> Quantity | None:
        """d{top}/d{bottom}: the local partial along an edge, else Σ over children (chain rule)."""
        graph = self.graph
        if top == bottom or graph.nodes[bottom].kind in GIVEN_KINDS:
            return None
        key = local_key(top, bottom)
        if key in self.quantities:
            return self.quantities[key]
        factors = []
        for child in graph.children[bottom]:
            if child != top and top not in self.descendants(child):
                continue
            factors.append((self.derivative(top, child).key, local_key(child, bottom)))
        expr = _chain_sum(tuple(factors))
        kind = "adjoint" if top == self.loss else "path"
        meaning = (kind if graph.nodes[bottom].kind != PARAMETER or kind == "path"
                   else "gradient", {"top": top, "bottom": bottom})
        quantity = self._add(Quantity(key, kind, meaning, expr, self._deps(expr), 0.0,
                                      pair=(top, bottom)))
        if top == self.loss and bottom in self.solution.example.adjoints:
            quantity.value = self.solution.example.adjoints[bottom]  # the derivation's sweep
        else:  # every factor is already in the catalogue with its true value
            quantity.value = self._evaluate_one(
                quantity, {d: self.quantities[d].value for d in quantity.deps})
        if self._complete:  # a key added later (resolve): no longer like the others
            if self._by_normal is not None:
                self._index_one(quantity.key)
            self._shared = _Structure(None)
        return quantity

    def _index(self):
        """The keys by shape (siblings); the tables of spellings wait for the first lookup."""
        self._complete = True
        self._by_normal: dict[str, str | None] | None = None
        self._shapes: dict[str, list[str]] = {}
        for key in self.quantities:
            self._shapes.setdefault(_shape(key), []).append(key)

    def _spellings(self):
        """The keys by their normalized spellings, and the graph's nodes."""
        if self._by_normal is not None:
            return
        self._by_normal = {}
        self._by_loose: dict[str, str | None] = {}
        for key in self.quantities:
            self._index_one(key)
        self._nodes_by_normal = {}
        for name, node in self.graph.nodes.items():
            if node.kind != TARGET:
                self._nodes_by_normal.setdefault(normalize_key(name), name)
        for name, node in self.graph.nodes.items():  # commas dropped, if still unambiguous
            loose = normalize_key(name).replace(",", "")
            self._nodes_by_normal.setdefault(loose, name)
        self._nodes_by_normal.setdefault("E", self.loss)
        self._nodes_by_normal.setdefault("Etot", self.loss)

    def _index_one(self, key: str):
        for table, text in ((self._by_normal, normalize_key(key)),
                            (self._by_loose, normalize_key(key).replace(",", ""))):
            if text in table and table[text] != key:
                table[text] = None  # ambiguous: only the exact spelling will do
            else:
                table[text] = key

    # Looking keys up ---------------------------------------------------------
    def resolve(self, text: str) -> str | None:
        """The catalogue key a student's spelling means, or None."""
        if text in self.quantities:
            return text
        self._spellings()
        normal = normalize_key(text)
        if normal.lower() in _LEARNING_RATE_ALIASES:
            return LEARNING_RATE
        for table, probe in ((self._by_normal, normal), (self._by_loose, normal.replace(",", ""))):
            if table.get(probe):
                return table[probe]
        if "/" in normal and "'" not in normal:
            top, _, bottom = normal.partition("/")
            if top.startswith("d") and bottom.startswith("d"):
                a = self._nodes_by_normal.get(top[1:])
                b = self._nodes_by_normal.get(bottom[1:])
                if (a and b and a != b and self.graph.nodes[a].expr is not None
                        and b not in self.descendants(a)):
                    quantity = self.derivative(a, b)
                    return quantity.key if quantity else None
        return None

    def suggest(self, text: str) -> str | None:
        self._spellings()
        normal = normalize_key(text)
        close = difflib.get_close_matches(normal, [k for k in self._by_normal if k], n=1,
                                          cutoff=0.75)
        return self._by_normal[close[0]] if close else None

    def siblings(self, key: str) -> list[str]:
        """Keys of the same shape differing in one index, or with two indices swapped."""
        siblings = self._shared.siblings
        if key not in siblings:
            siblings[key] = self._find_siblings(key)
        return siblings[key]

    def _find_siblings(self, key: str) -> list[str]:
        mine = _indices(key)
        found = []
        for other in self._shapes.get(_shape(key), []):
            theirs = _indices(other)
            if other == key or len(theirs) != len(mine):
                continue
            differ = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
            swapped = sorted(mine) == sorted(theirs) and len(differ) == 2
            if len(differ) == 1 or swapped:
                found.append(other)
        return found

    def order(self) -> list[str]:
        """Keys in the order a worked solution shows them (forward, layer by layer back, after)."""
        keys = [k for k, q in self.quantities.items()
                if q.kind in LEAF_KINDS and q.node is not None]  # the graph's leaves (not η)
        keys += [k for k, q in self.quantities.items() if q.kind == "forward"]
        several = len(self.solution.examples) > 1
        state: dict[str, list[str]] = {}  # an optimizer's state, before its update
        for k, q in self.quantities.items():
            if q.kind == "state":
                state.setdefault(q.node, []).append(k)
        for section in self.solution.example.sections:
            for step in section.steps:
                for term in step.terms:
                    keys += [self._renamed.get(f.key, f.key) for f in term.factors]
                keys.append(self._renamed.get(step.key, step.key))
            if not several:  # one example: each layer's update right after its gradients
                for u in section.updates:
                    keys += state.get(u.parameter, []) + [u.key]
        if several:  # the examples combined, then the update
            keys += [k for k, q in self.quantities.items() if q.kind == "example"
                     and "'" not in k]
            keys += self._combined
            for u in self.solution.updates:
                keys += state.get(u.parameter, []) + [u.key]
        keys += [k for k, q in self.quantities.items() if q.kind == "after"]
        keys += list(self.quantities)
        return list(dict.fromkeys(k for k in keys if k in self.quantities))

    # Evaluating ---------------------------------------------------------------
    def _function(self, expr: sp.Expr, deps: list[str]):
        return self._compiled(expr, deps, self._functions, _FUNCTIONS, _float_function)

    def _interval_function(self, expr: sp.Expr, deps: list[str]):
        """The formula over intervals (intervals.py); None when it cannot be bounded."""
        return self._compiled(expr, deps, self._interval_functions, _INTERVAL_FUNCTIONS,
                              _bounded_function)

    @staticmethod
    def _compiled(expr, deps, mine: dict, shared: dict, compile_):
        """Compiled once per formula: looked up in this catalogue by identity (its formulas
        are the same objects every time), else in every catalogue's (the variants of a
        sheet share their formulas' shapes: one deep comparison)."""
        key = (expr, tuple(deps))
        function = mine.get(key, _MISSING)
        if function is _MISSING:
            function = shared.get(key, _MISSING)
            if function is _MISSING:
                function = shared[key] = compile_(expr, deps)
            mine[key] = function
        return function

    def _evaluate_one(self, quantity: Quantity, values: dict,
                      formula=None) -> float | Interval | None:
        """The formula on ``values``: a float, or an Interval when a value is one (a
        number known only to the digits written)."""
        function, deps = self._float_plan(quantity, formula)
        override = (self._derivative_input(quantity.key, values)
                    if quantity.key in self._inverses else None)
        return self._evaluate_expr(quantity.formula if formula is None else formula, deps,
                                   values, override, function)

    def _evaluate_expr(self, expr: sp.Expr, deps: list[str], values: dict, override=None,
                       function=None):
        """``function``: the formula already compiled for floats (else looked up)."""
        args = [values.get(d) for d in deps]
        if override:
            args = [override.get(d, a) for d, a in zip(deps, args)]
        return self._evaluate_args(expr, deps, args, function)

    def _evaluate_args(self, expr: sp.Expr, deps: list[str], args: list, function=None):
        """The formula on its arguments (``deps``' values, in order)."""
        if None in args:
            return None
        if Interval in map(type, args):  # (Interval has no subclass)
            function = self._interval_function(expr, deps)
            if function is not None:
                result = function(*args)
                return None if result is None or math.isnan(result.lo + result.hi) else result
            args = [a.mid if isinstance(a, Interval) else a for a in args]  # cannot bound it
        return _float_result(function or self._function(expr, deps), args)

    def _altered_deps(self, formula: sp.Expr) -> list[str]:
        """An altered formula's keys (the slips' formulas are the same objects every time)."""
        deps = self._formula_deps.get(formula)
        if deps is None:
            deps = self._formula_deps[formula] = self._deps(formula)
        return deps

    def evaluate(self, given: dict[str, float], round_to: int | None = None,
                 formulas: dict[str, sp.Expr] | None = None) -> dict[str, float | None]:
        """Every quantity from the leaves, taking ``given`` values as they are.

        ``round_to`` rounds each computed intermediate to that many decimals (a hand
        calculation); ``formulas`` replaces some quantities' formulas (a slip replayed).
        """
        if not given and round_to is None and not formulas and self.in_order:
            plain = self._plain_values()
            if plain is not None:
                return plain
        formulas = formulas or {}
        values: dict[str, float | None] = {}
        for key, quantity in self.quantities.items():
            if key in given:
                values[key] = given[key]
                if isinstance(values[key], Written):
                    values[key] = self._held(quantity, values, formulas.get(key), given[key])
            elif quantity.formula is None:
                values[key] = quantity.value
            else:
                value = self._evaluate_one(quantity, values, formulas.get(key))
                if value is not None and round_to is not None and not isinstance(value,
                                                                                   Interval):
                    value = round_half_up(value, round_to)
                values[key] = value
        return values

    def _plain_values(self) -> dict | None:
        """``evaluate({})`` in one straight-line pass (see _straight_line); None when a step
        is not a finite float (then evaluated one at a time)."""
        if self._shared.plain is None:
            plan = [(key, *self._float_plan(quantity, None))
                    for key, quantity in self.quantities.items() if quantity.formula is not None]
            self._shared.plain = (plan, _straight_line(plan))
        _, (run, reads) = self._shared.plain
        quantities = self.quantities
        results = _finite_floats(run, [quantities[d].value if d in quantities else None
                                       for d in reads])
        if results is None:
            return None
        computed = iter(results)
        return {key: next(computed) if quantity.formula is not None else quantity.value
                for key, quantity in quantities.items()}

    def evaluate_altered(self, plain: dict, formulas: dict[str, sp.Expr]) -> dict:
        """``evaluate({}, formulas=formulas)`` from ``plain`` = ``evaluate({})``: only the
        quantities an altered formula reaches are computed again; every other one would
        come out the same (same function, same arguments), so it is taken from ``plain``."""
        if not self.in_order:
            return self.evaluate({}, formulas=formulas)
        cached = self._shared.altered.get(id(formulas))
        if cached is None or cached[0] is not formulas:
            plan = self._altered_plan(formulas)
            cached = self._shared.altered[id(formulas)] = (formulas, plan,
                                                           _straight_line(plan))
        _, plan, (run, reads) = cached
        values = dict(plain)
        results = _finite_floats(run, [plain.get(d) for d in reads])
        if results is not None:  # every step a finite float (the usual case)
            values.update(zip([key for key, _, _ in plan], results))
            return values
        for key, function, deps in plan:  # a step outside its domain: None from there on
            # _evaluate_one without its intervals: every value here is a float
            args = [values.get(d) for d in deps]
            values[key] = None if None in args else _float_result(function, args)
        return values

    def _altered_plan(self, formulas: dict[str, sp.Expr]) -> list[tuple]:
        """(key, compiled function, its keys) of every quantity the altered formulas reach,
        in order."""
        plan, altered = [], set()
        for key, quantity in self.quantities.items():
            if quantity.formula is not None and (key in formulas
                                                 or not altered.isdisjoint(quantity.deps)):
                plan.append((key, *self._float_plan(quantity, formulas.get(key))))
                altered.add(key)
        return plan

    def _float_plan(self, quantity: Quantity, formula: sp.Expr | None):
        """(compiled function, its keys) of a quantity's formula or of an altered one."""
        plans = self._shared.plans
        plan = plans.get((quantity.key, formula))
        if plan is None:
            deps = quantity.deps if formula is None else self._altered_deps(formula)
            plan = plans[quantity.key, formula] = (
                self._function(quantity.formula if formula is None else formula, deps), deps)
        return plan

    @property
    def in_order(self) -> bool:
        """Does every formula come after the quantities it reads (so that a quantity's
        value in an evaluation is its formula on that evaluation's values)?"""
        if self._shared.in_order is None:
            position = {key: k for k, key in enumerate(self.quantities)}
            self._shared.in_order = all(position.get(dep, k) < k for k, quantity in enumerate(
                self.quantities.values()) for dep in quantity.deps)
        return self._shared.in_order

    def upstream(self, key: str) -> frozenset[str]:
        """Every key that ``key``'s formula reaches through its dependencies."""
        upstream = self._shared.upstream
        if key not in upstream:
            seen, stack = set(), list(self.quantities[key].deps)
            while stack:
                dep = stack.pop()
                if dep not in seen:
                    seen.add(dep)
                    stack += self.quantities[dep].deps
            upstream[key] = frozenset(seen)
        return upstream[key]

    def _derivative_input(self, key: str, values: dict) -> dict | None:
        """For f'(y) in a student's world: their y may also be the one their (rounded)
        output stands for, since f'(y) is often computed from the output (σ′ = out(1 − out))."""
        y, out, inverse = self._inverses[key]
        if not isinstance(values.get(y), Interval) or not isinstance(values.get(out), Interval):
            return None
        back = self._evaluate_expr(inverse, [out], values)
        return {y: values[y].hull(back)} if isinstance(back, Interval) else None

    def _held(self, quantity: Quantity, values: dict, formula, written: Written) -> Interval:
        """What a student may have held for a value they wrote: the number written (they
        went on from it), or a value that rounds to it and that their own earlier numbers
        give (they kept the calculator's); when none does, the value written is their slip,
        held to any precision: every value that rounds to it."""
        propagated = None
        if quantity.formula is not None or formula is not None:
            propagated = self._evaluate_one(quantity, values, formula)
        if propagated is None:
            return written.digits
        both = written.digits.intersection(
            propagated if isinstance(propagated, Interval) else Interval.point(propagated))
        return written.digits if both is None else both.hull(Interval.point(written.number))

    def recompute(self, key: str, values: dict, formula: sp.Expr | None = None) -> float | None:
        """A quantity from other quantities' values through its formula (None for data)."""
        quantity = self.quantities[key]
        if quantity.formula is None and formula is None:
            return None
        return self._evaluate_one(quantity, values, formula)

    def recompute_with(self, key: str, values: dict, changed: dict) -> float | None:
        """``recompute(key, values)`` with the values of ``changed`` in place of theirs."""
        quantity = self.quantities[key]
        if quantity.formula is not None and key not in self._inverses:  # reads its deps alone
            function, deps = self._float_plan(quantity, None)
            return self._evaluate_args(quantity.formula, deps, [
                changed[d] if d in changed else values.get(d) for d in deps], function)
        reads = self._shared.reads.get(key)
        if reads is None:  # what evaluating the formula looks up
            inverse = self._inverses.get(key)
            reads = self._shared.reads[key] = tuple(dict.fromkeys(
                list(self.quantities[key].deps) + (list(inverse[:2]) if inverse else [])))
        view = {d: values[d] for d in reads if d in values}
        view.update(changed)
        return self.recompute(key, view)

    def slip_shape(self, key: str) -> "_SlipShape":
        """What the usual slips of ``key`` are made of (made once per structure)."""
        shapes = self._shared.slip_shapes
        shape = shapes.get(key)
        if shape is None:
            shape = shapes[key] = _SlipShape.of(self, key)
        return shape

    # Slips replayed as altered formulas -------------------------------------
    @cached_property
    def variants(self) -> list[tuple[tuple[str, dict], dict[str, sp.Expr]]]:
        """(diagnosis, altered formulas) for the slips that change a whole solution: made
        from the graph alone, so the catalogues of one graph (a sheet's variants) share them."""
        graph, out = _SLIPS_OF_GRAPH.get("last", (None, None))
        if graph is not self.graph:
            out = self._slip_formulas()
            _SLIPS_OF_GRAPH["last"] = (self.graph, out)
        return out

    def variants_reaching(self, key: str) -> list[tuple[int, tuple[str, dict], dict]]:
        """(index, diagnosis, altered formulas) of the ``variants`` whose altered formulas
        lie upstream of key (or are key's own)."""
        variants = self.variants
        reaching = self._shared.reaching.get(key)
        if reaching is None or reaching[0] is not variants:
            upstream = self.upstream(key)
            reaching = self._shared.reaching[key] = (variants, [
                (index, diagnosis, formulas) for index, (diagnosis, formulas)
                in enumerate(variants) if key in formulas or not upstream.isdisjoint(formulas)])
        return reaching[1]

    def _slip_formulas(self) -> list[tuple[tuple[str, dict], dict[str, sp.Expr]]]:
        out = []
        terms = [n for n in self.graph.nodes.values() if n.kind == LOSS_TERM]
        if any(t.expr.has(sp.log) for t in terms):
            log10 = lambda e: e.replace(sp.log, lambda a: sp.log(a) / sp.log(10))  # noqa: E731
            for value, derivative in ((True, False), (False, True), (True, True)):
                out.append((("log10", {}), self._term_variant(log10, terms, value, derivative)))
        for scale in LOSSES[self.spec.loss.kind].slip_scales(len(terms)):
            def scaled(e, s=scale):
                return s * e
            for value, derivative in ((True, False), (False, True), (True, True)):
                code = "squared_scale_loss" if value else "squared_scale_derivative"
                out.append(((code, {"scale": str(scale)}),
                            self._term_variant(scaled, terms, value, derivative)))
        # A wrong derivative in one unit, or as a habit: in every unit of a layer, in every
        # unit with that activation.
        layers: dict[tuple, dict] = {}
        habits: dict[tuple, dict] = {}
        for node in self.graph.nodes.values():
            if node.kind != ACTIVATION or len(node.parents) != 1:
                continue
            y = self.graph.symbol(node.parents[0])
            key = local_key(node.name, node.parents[0])
            for wrong, right, expr in ACTIVATIONS[node.activation].wrong_derivatives(y):
                out.append((("wrong_derivative", {"key": key, "wrong": wrong, "right": right}),
                            {key: expr}))
                words = (wrong, right)
                layers.setdefault((node.layer,) + words, {})[key] = expr
                habits.setdefault((node.activation,) + words, {})[key] = expr
        for group in (layers, habits):
            for (_, wrong, right), formulas in group.items():
                if len(formulas) > 1 and formulas not in [f for _, f in out]:
                    out.append((("wrong_derivative_everywhere", {"wrong": wrong,
                                                                 "right": right}), formulas))
        return out

    def _term_variant(self, change, terms, value: bool, derivative: bool) -> dict[str, sp.Expr]:
        """Loss terms changed in their value (before and after the step), their derivative,
        or both (then the slip also changes the gradients and the step)."""
        formulas = {}
        for node in terms:
            expr = change(node.expr)
            if value:
                formulas[node.name] = expr
                formulas[updated_key(node.name)] = self._after_formula(node, expr)
            for parent in node.parents:
                if derivative and self.graph.nodes[parent].kind != TARGET:
                    formulas[local_key(node.name, parent)] = self._local_formula(
                        node.name, parent, expr)
        return formulas


@dataclass(frozen=True)
class _SlipShape:
    """Which usual slips a key has, from the catalogue's keys and formulas alone (_Judge.
    candidates computes their numbers): the same for every variant of a sheet."""

    formula: sp.Expr | None
    update: tuple[str, str] | None  # (θ, ∂E/∂θ's key): θ' by the optimizer's slips
    gradient: bool  # ∂E/∂…: the step η·∂E/∂θ given for the gradient
    before: str | None  # a value after the update: the node's value before it
    primed_parents: tuple[tuple[str, str], ...]  # … and (parent, parent') of its formula
    after_update: str | None  # the key of this value after the update
    siblings: tuple[tuple[str, str], ...]  # (other key, "index_swap" or "neighbour")
    neighbours_in_formula: tuple[tuple[str, str], ...]  # (key read, sibling read instead)

    @staticmethod
    def of(catalog: Catalog, key: str) -> "_SlipShape":
        quantity = catalog.quantities[key]
        kind = quantity.kind
        update = (quantity.node, adjoint_key(catalog.loss, quantity.node)) if (
            kind == "update" and quantity.formula != sp.Symbol(quantity.node)) else None
        primed_parents = ()
        if kind == "after":
            primed_parents = tuple(
                (parent, updated_key(parent))
                for parent in catalog.graph.nodes[quantity.node].parents
                if updated_key(parent) in catalog.quantities)
        after_update = updated_key(key) if (kind in ("forward", PARAMETER) and updated_key(key)
                                            in catalog.quantities) else None
        mine = _indices(key)
        swapped = lambda other: sorted(_indices(other)) == sorted(mine)  # noqa: E731
        siblings = tuple((other, "index_swap" if swapped(other) else "neighbour")  # swaps first
                         for other in sorted(catalog.siblings(key), key=lambda o: not swapped(o)))
        return _SlipShape(
            quantity.formula, update,
            kind in ("adjoint", "path") and quantity.pair[0] == catalog.loss,
            quantity.node if kind == "after" else None, primed_parents, after_update,
            siblings, tuple((dep, other) for dep in quantity.deps
                            for other in catalog.siblings(dep)))


COPIED_KINDS = LEAF_KINDS + ("buffer",)  # given data (η too): a written copy is exact


def example_key(loss: str, k) -> str:
    """The loss of example k of a step: ``E^{(k)}`` (as the worked solution's table)."""
    return f"{loss}^{{({k})}}"


@dataclass(frozen=True)
class Written:
    """A computed value as a student wrote it: the number, and every value that rounds to
    it (0.4411: from 0.44105 to 0.44115)."""

    number: float
    digits: Interval


def written_value(answer: Answer, quantity: Quantity) -> float | Written:
    """What a written number stands for (given data and whole numbers: itself)."""
    if quantity.kind in COPIED_KINDS or answer.integer:
        return answer.number
    half = 0.5 * 10.0 ** answer.value.as_tuple().exponent
    return Written(answer.number, Interval.around(answer.number, half))


def beside(written: str, value: float | Interval | None, decimal_comma: bool = False) -> str:
    """``value`` with two decimals more than the number ``written``, so that the place
    where they differ shows (0.7513 beside 0.751383); an interval as ``lo … hi``."""
    if value is None:
        return ""
    if isinstance(value, Interval):
        lo, hi = (beside(written, v, decimal_comma) for v in (value.lo, value.hi))
        return lo if lo == hi else f"{lo} … {hi}"
    if not math.isfinite(value):
        return str(value)
    parsed = parse_number(written)
    decimals = 2 - (parsed[0].as_tuple().exponent if parsed else 0)
    if value and abs(value) < 10.0 ** (1 - decimals):  # keep two significant digits
        decimals = 1 - math.floor(math.log10(abs(value)))
    decimals = min(max(decimals, 0), 17)
    text = f"{_half_up(value, decimals):f}"
    text = "0" if text.strip("-0.") == "" and "0" in text else text
    return text.replace(".", ",") if decimal_comma else text


def round_half_up(value: float, decimals: int) -> float:
    """Rounded as a person rounds (0.125 → 0.13), not to even."""
    return float(_half_up(value, decimals))


def _half_up(value: float, decimals: int) -> Decimal:
    exact = Decimal(repr(float(value)))
    digits = exact.adjusted() + decimals + 2  # of the result: 1e300 to 15 decimals has 316
    return exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP,
                          context=Context(prec=max(28, digits)))


@lru_cache(maxsize=1 << 16)  # a sheet's catalogues have the same keys
def _shape(key: str) -> str:
    return re.sub(r"\d+", "#", key)


def _indices(key: str) -> list[str]:
    return re.findall(r"\d+", key)


# ---------------------------------------------------------------------------
# Judging one number


@dataclass
class Tolerance:
    """How close is right: an explicit relative or absolute tolerance, else the digits written."""

    rel: float | None = None
    abs: float | None = None

    def agrees(self, answer: Answer, value: float | Interval | None) -> bool:
        """Does the answer agree with ``value``, or with some value of an interval (what
        numbers known to their written digits give)?"""
        if value is None:
            return False
        given = answer.number
        if isinstance(value, Interval):
            value = value.nearest(given)
        if not math.isfinite(value):
            return False
        if self.rel is not None:
            return abs(given - value) <= self.rel * abs(value)
        if self.abs is not None:
            return abs(given - value) <= self.abs
        if answer.integer:  # "1", "0", "2": an exact value, up to float noise
            return abs(given - value) <= 1e-9 * max(1.0, abs(value))
        # Right to the digits written: within half a unit of the last digit (a tie counts).
        half = 0.5 * 10.0 ** answer.value.as_tuple().exponent
        return abs(given - value) <= half * (1 + 1e-9) + 1e-15 * max(1.0, abs(value))


@dataclass
class Diagnosis:
    code: str
    values: dict = field(default_factory=dict)

    def text(self, lang: str = "en") -> str:
        from .templating import fill, phrases
        phrase = phrases(lang).get("verify", {}).get("diagnosis", {}).get(self.code, self.code)
        return fill(phrase, **{k: _show(v) for k, v in self.values.items()})


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.7g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


@dataclass
class Check:
    """One answer judged."""

    key: str  # the catalogue key, or the key as written when unknown
    written: str  # the key as the student wrote it
    given: str  # the number as written
    given_value: float
    place: str | None
    status: str  # correct | wrong | consistent | unknown_key
    expected: float | None = None
    formula: str = ""  # SymPy's code (JSON); reports print ``formula_expr`` as mathematics
    from_your_values: float | None = None  # the formula on the student's own values
    formula_expr: sp.Expr | None = None
    diagnosis: Diagnosis | None = None
    first_wrong: bool = False
    restated: bool = False  # a key already answered earlier in the file

    def as_data(self, lang: str = "en") -> dict:
        return {"key": self.key, "given": self.given_value, "expected": self.expected,
                "status": self.status,
                "diagnosis": self.diagnosis.text(lang) if self.diagnosis else None,
                "diagnosis_code": self.diagnosis.code if self.diagnosis else None,
                "place": self.place, "written_key": self.written, "given_text": self.given,
                "formula": self.formula, "from_your_values": self.from_your_values}


@dataclass
class Verification:
    spec: NetworkSpec
    checks: list[Check]
    round_to: int | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    @property
    def ok(self) -> bool:
        """True when every answer is correct or consistent (and every key known)."""
        return all(c.status in ("correct", "consistent") for c in self.checks)

    @property
    def first_wrong(self) -> Check | None:
        return next((c for c in self.checks if c.first_wrong), None)

    def as_data(self, lang: str = "en") -> list[dict]:
        return [c.as_data(lang) for c in self.checks]

    def report(self, format: str = "md", lang: str | None = None) -> str:
        """The report as the command prints it: text, md or json (``lang``: default the
        spec's)."""
        from .templating import LANGUAGES
        from .validate import allowed
        return render_verification(self, allowed("format", format, REPORT_FORMATS),
                                   allowed("lang", lang or self.spec.lang, LANGUAGES))

    def __repr__(self) -> str:  # one line, not every check
        counts = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in self.counts.items())
        return f"<Verification of {len(self.checks)} answers: {counts}>"

    def _repr_markdown_(self) -> str:  # Jupyter shows the report
        return self.report("md")


class _Judge:
    """Judges answers against the truth, the student's own values, and the usual slips."""

    def __init__(self, catalog: Catalog, answers: list[Answer], tolerance: Tolerance,
                 round_to: int | None):
        self.catalog = catalog
        self.tolerance = tolerance
        self.round_to = round_to
        self.keys = [catalog.resolve(a.key) for a in answers]
        self.student: dict[str, float] = {}
        self.written: dict[str, float | Interval] = {}  # what each written number stands for
        self.first_answer: dict[str, Answer] = {}
        for answer, key in zip(answers, self.keys):
            if key is not None and key not in self.student:
                self.student[key] = answer.number
                self.written[key] = written_value(answer, catalog.quantities[key])
                self.first_answer[key] = answer
        self.truth = {k: q.value for k, q in catalog.quantities.items()}
        # The student's world: every quantity recomputed from their own numbers, as the
        # intervals their digits stand for (what is judged), and from the numbers as
        # written (what the report shows).
        self.basis = catalog.evaluate(self.written)
        # nothing written: both worlds are the plain evaluation
        self.shown_basis = catalog.evaluate(self.student) if self.student else self.basis
        if round_to is not None:
            self.rounded = catalog.evaluate({}, round_to=round_to)
            self.rounded_basis = catalog.evaluate(self.student, round_to=round_to)
        self._variant_values = {}

    @cached_property
    def plain(self) -> dict:
        """Every quantity evaluated from the leaves alone (what each slip is replayed on)."""
        return self.basis if not self.written else self.catalog.evaluate({})

    def agrees(self, answer, value) -> bool:
        return self.tolerance.agrees(answer, value)

    # Verdicts -----------------------------------------------------------------
    def check(self, answer: Answer, key: str | None) -> Check:
        if key is None:
            suggestion = self.catalog.suggest(answer.key)
            diagnosis = (Diagnosis("did_you_mean", {"key": suggestion}) if suggestion
                         else Diagnosis("unknown_key"))
            return Check(answer.key, answer.key, answer.text, answer.number, answer.place,
                         "unknown_key", diagnosis=diagnosis)
        quantity = self.catalog.quantities[key]
        restated = self.first_answer[key] is not answer
        check = Check(key, answer.key, answer.text, answer.number, answer.place, "wrong",
                      expected=quantity.value, formula=formula_text(quantity.formula),
                      restated=restated, formula_expr=quantity.formula)
        check.from_your_values = self.catalog.recompute(key, self.shown_basis)
        if self.agrees(answer, quantity.value):
            check.status = "correct"
        elif self.agrees(answer, own := self.catalog.recompute(key, self.basis)):
            check.status = "consistent"
            check.diagnosis = self.carried_forward(key, beside(answer.text, own))
        elif restated and self.agrees(answer, self.student[key]):
            check.status = "consistent"
            check.diagnosis = Diagnosis("restated", {"value": self.first_answer[key].text})
        elif self.round_to is not None and (
                self.agrees(answer, self.rounded[key])
                or self.agrees(answer, self.catalog.recompute(key, self.rounded_basis))):
            check.status = "consistent"
            check.diagnosis = Diagnosis("rounding_mode", {"n": self.round_to,
                                                          "value": self.rounded[key]})
        else:
            check.diagnosis = self.diagnose(answer, key) or Diagnosis("no_diagnosis")
        return check

    def carried_forward(self, key: str, value: str) -> Diagnosis:
        """Which of the student's earlier wrong answers this one inherits, if any (``value``:
        what the student's own numbers give, as text)."""
        wrong, seen, stack = [], set(), list(self.catalog.quantities[key].deps)
        while stack:
            dep = stack.pop()
            if dep in seen:
                continue
            seen.add(dep)
            if dep in self.student:
                if not self.agrees(self.first_answer[dep], self.truth[dep]):
                    wrong.append(dep)
            else:
                stack += self.catalog.quantities[dep].deps
        if wrong:
            order = {k: i for i, k in enumerate(self.catalog.order())}
            return Diagnosis("carried_forward", {"keys": sorted(wrong, key=order.get),
                                                 "value": value})
        return Diagnosis("rounded_inputs", {"value": value})

    # Diagnosis ----------------------------------------------------------------
    def diagnose(self, answer: Answer, key: str) -> Diagnosis | None:
        for diagnosis, value in self.candidates(answer, key):
            if self.agrees(answer, value):
                return diagnosis
        return None

    def bases(self):
        return (self.basis, self.truth)

    def candidates(self, answer: Answer | None, key: str):
        """(diagnosis, the number that slip gives), most specific first; ``answer`` None:
        the slips themselves, without the rounding ones (which need the digits written)."""
        catalog, truth = self.catalog, self.truth
        shape = catalog.slip_shape(key)
        if shape.update is not None:
            theta, grad = shape.update
            optimizer = OPTIMIZERS[catalog.spec.optimizer]
            settings = catalog.spec.optimizer_settings
            for values in self.bases():
                old, g, lr = values.get(theta), values.get(grad), values.get(LEARNING_RATE)
                if None in (old, g, lr):
                    continue
                try:
                    slips = list(optimizer.slips(theta, old, g, lr, settings))
                except TypeError:  # a slip written for floats alone: the intervals' middles
                    middle = [v.mid if isinstance(v, Interval) else v for v in (old, g, lr)]
                    slips = list(optimizer.slips(theta, *middle, settings))
                for code, values_of_slip, number in slips:
                    yield Diagnosis(code, values_of_slip), number
        if shape.gradient:
            gradients = [truth[key], catalog.recompute(key, self.basis)]  # the student's own
            if key in self.first_answer and self.first_answer[key] is not answer:  # … or as
                # they wrote it before
                gradients.append(self.basis[key])
            for gradient in gradients:
                if gradient is not None:
                    yield Diagnosis("step_for_gradient"), self.basis[LEARNING_RATE] * gradient
        if shape.before is not None:
            yield Diagnosis("before_update"), truth[shape.before]
            if shape.before in self.written:
                yield Diagnosis("before_update"), self.basis[shape.before]
            for parent, primed in shape.primed_parents:
                for values in self.bases():
                    yield (Diagnosis("before_update_parent", {"parent": parent}),
                           catalog.recompute_with(key, values,
                                                  {primed: values.get(parent)}))
        if shape.after_update is not None:
            yield Diagnosis("after_update"), truth[shape.after_update]
        for index, diagnosis, formulas in catalog.variants_reaching(key):
            truth_variant, student_variant = self._variant(index, formulas)
            yield Diagnosis(*diagnosis), truth_variant[key]
            if (student_variant is not truth_variant or not catalog.in_order
                    or shape.formula is None):  # else nothing written: the same formula on
                # the same values, as the truth's evaluation just computed (the same slip)
                yield Diagnosis(*diagnosis), catalog.recompute(key, student_variant,
                                                               formulas.get(key))
        yield Diagnosis("opposite_sign"), -truth[key]
        own = catalog.recompute(key, self.basis)  # from the student's own numbers
        if own is not None:
            yield Diagnosis("opposite_sign"), -own
        for other, code in shape.siblings:
            yield Diagnosis(code, {"other": other}), truth[other]
            if other in self.student:
                yield Diagnosis(code, {"other": other}), self.student[other]
        for dep, other in shape.neighbours_in_formula:
            for values in self.bases():
                yield (Diagnosis("neighbour_in_formula", {"other": other, "used": dep}),
                       catalog.recompute_with(key, values, {dep: values.get(other)}))
        if answer is not None:
            yield from self.rounding(answer, key)
        for k in (-1, 1, -2, 2, -3, 3):
            yield Diagnosis("power_of_ten", {"factor": f"10^{k}"}), truth[key] * 10.0 ** k

    def _variant(self, index: int, formulas):
        """The truth and the student's world with the index-th slip replayed (several
        slips share a diagnosis: log10 in the loss, in its derivative, in both)."""
        if index not in self._variant_values:
            truth = self.catalog.evaluate_altered(self.plain, formulas)
            student = (self.catalog.evaluate(self.written, formulas=formulas) if self.written
                       else truth)  # nothing written: the student's world is the truth
            self._variant_values[index] = (truth, student)
        return self._variant_values[index]

    def rounding(self, answer: Answer, key: str):
        """The true value rounded twice, or cut instead of rounded, to the digits written."""
        truth = self.truth[key]
        if truth is None or not math.isfinite(truth) or self.tolerance.rel is not None \
                or self.tolerance.abs is not None:
            return
        exact = Decimal(repr(float(truth)))
        try:
            last = Decimal(1).scaleb(answer.value.as_tuple().exponent)
            for extra in (1, 2, 3):
                first = exact.quantize(last.scaleb(-extra), rounding=ROUND_HALF_UP)
                twice = first.quantize(last, rounding=ROUND_HALF_UP)
                if twice != exact.quantize(last, rounding=ROUND_HALF_UP):
                    yield (Diagnosis("double_rounding", {"value": truth,
                                                         "intermediate": str(first)}),
                           float(twice))
            cut = exact.quantize(last, rounding=ROUND_DOWN)
        except InvalidOperation:  # more digits written than a Decimal holds (1e-999999999):
            return  # no rounding slip can explain such an answer
        yield Diagnosis("truncated", {"value": truth}), float(cut)


def usual_slips(catalog: Catalog, keys: list[str]) -> dict[str, list[tuple[Diagnosis, float]]]:
    """What each usual slip gives for each key when every other value is right, most
    specific first: key → [(diagnosis, value)], the slips verify names (a Moodle question's
    wrong answers, moodle.py)."""
    return {key: list(slips) for key, slips in each_usual_slip(catalog, keys).items()}


def each_usual_slip(catalog: Catalog, keys: list[str]) -> dict[str, Iterator]:
    """``usual_slips`` one at a time: key → an iterator of (diagnosis, value), each made as
    it is read (a sheet's many variants keep none of them)."""
    judge = _Judge(catalog, [], Tolerance(), None)
    return {key: _usual_slips_of(judge, key) for key in keys}


def _usual_slips_of(judge: _Judge, key: str) -> Iterator[tuple[Diagnosis, float]]:
    for diagnosis, value in judge.candidates(None, key):
        if value.__class__ is not float:  # (a float, nearly always: as it is)
            if isinstance(value, Interval):  # nothing written: the student's world is true
                value = value.mid
            if value is None:
                continue
            value = float(value)
        if math.isfinite(value):
            yield diagnosis, value


def verify_answers(spec, answers, rel: float | None = None, abs: float | None = None,
                   round_to: int | None = None) -> Verification:
    """Judge every answer (a path to an answers file, or a list of Answer) against the
    worked solution of SPEC: correct, consistent (error carried forward), wrong, unknown_key.

    SPEC may be a Catalog already built (checking many answer sets on one network)."""
    from .spec import as_spec
    catalog = spec if isinstance(spec, Catalog) else None
    network = catalog.spec if catalog else as_spec(spec)
    if rel is not None and abs is not None:
        raise SpecError(network.source, "tolerance", "either a relative or an absolute "
                                                     "tolerance, not both")
    for name, value in (("rel", rel), ("abs", abs)):
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise SpecError(network.source, name, f"a tolerance >= 0, got {value}")
    if round_to is not None and not 0 <= round_to <= 15:
        raise SpecError(network.source, "round", f"0 to 15 decimals, got {round_to}")
    if not isinstance(answers, list):
        answers = read_answers(answers)
    if catalog is None:
        check_worked_solution(network)
        check_verify(network)
    catalog = catalog or Catalog(network)
    judge = _Judge(catalog, answers, Tolerance(rel, abs), round_to)
    checks = [judge.check(a, k) for a, k in zip(answers, judge.keys)]
    # The first wrong step in the order the student worked (the answers' order).
    wrong = [c for c in checks if c.status == "wrong"]
    if wrong:
        wrong[0].first_wrong = True
    return Verification(network, checks, round_to)


# ---------------------------------------------------------------------------
# Reports

REPORT_FORMATS = ("text", "md", "json")
_TEMPLATES = {"text": "verify.txt.j2", "md": "verify.md.j2"}


def render_verification(result: Verification, fmt: str = "text", lang: str | None = None) -> str:
    """The report: terminal text (formulas in readable Unicode: −v₁·ln(out_{o1})), a
    Markdown document (formulas in LaTeX math), or JSON (a list of {key, given, expected,
    status, diagnosis} objects)."""
    lang = lang or result.spec.lang
    if fmt == "json":
        import json
        from .jsonout import finite_or_null
        return json.dumps(finite_or_null(result.as_data(lang)), indent=2,
                          ensure_ascii=False) + "\n"
    from .escaping import visible
    from .notation import NumberFormat, key_tex, text_math
    from .templating import environment, phrases
    table = phrases(lang)
    t = table["verify"]
    numbers = NumberFormat(7, table["meta"]["decimal_comma"])

    comma = numbers.decimal_comma

    def show(c, value):  # two decimals more than written: where they differ shows
        return "" if value is None else beside(c.given, value, comma)

    def formula(check):
        if check.formula_expr is None:
            return ""
        return (text_math(check.formula_expr) if fmt == "text"
                else "$" + key_tex(sp.Eq(sp.Symbol(check.key), check.formula_expr,
                                         evaluate=False)) + "$")

    rows = [{"key": visible(c.key), "place": visible(c.place or ""), "given": c.given,
             "expected": show(c, c.expected), "formula": formula(c),
             "from_your_values": show(c, c.from_your_values) if c.status != "correct" else "",
             "diagnosis": visible(c.diagnosis.text(lang)) if c.diagnosis else "",
             "status": c.status, "status_text": t["status"][c.status],
             "first_wrong": c.first_wrong} for c in result.checks]
    by = {s: [r for r in rows if r["status"] == s] for s in STATUSES}
    text = environment().get_template(_TEMPLATES[fmt]).render(
        t=t, colon=table["meta"]["colon"], rows=rows, counts=result.counts,
        title=visible(result.spec.title or result.spec.source),
        first=next((r for r in rows if r["first_wrong"]), None), wrong=by["wrong"],
        consistent=by["consistent"], unknown=by["unknown_key"], round_to=result.round_to)
    return re.sub(r"\n{3,}", "\n\n", text).lstrip("\n")


def verify_report(spec, answers, fmt: str = "text", lang: str | None = None,
                  rel: float | None = None,
                  abs: float | None = None, round_to: int | None = None) -> tuple[str, bool]:
    """(the report, whether every value is correct or consistent): what the CLI prints."""
    result = verify_answers(spec, answers, rel=rel, abs=abs, round_to=round_to)
    return render_verification(result, fmt, lang), result.ok


def keys_listing(spec, lang: str | None = None) -> str:
    """Every key of SPEC's worked solution, one per line: key, meaning, formula (no values),
    the formula as readable mathematics (−v₁·ln(out_{o1}), ∂E/∂y·out_{h1}); a local
    derivative of an activation also in its textbook form (out_{o1}·(1 − out_{o1}))."""
    from .notation import text_math
    from .spec import as_spec
    from .templating import fill, phrases
    network = as_spec(spec)
    check_worked_solution(network)
    catalog = Catalog(network)
    meanings = phrases(lang or network.lang)["verify"]["meaning"]
    lines = []
    for key in catalog.order():
        quantity = catalog.quantities[key]
        phrase, values = quantity.meaning
        line = f"{key}\t{fill(meanings[phrase], **values)}"
        if quantity.formula is not None:
            line += f"\t{key} = {text_math(quantity.formula)}"
            textbook = catalog.textbook(quantity)
            if textbook is not None:
                line += f" = {text_math(textbook)}"
        lines.append(line)
    return "\n".join(lines) + "\n"
