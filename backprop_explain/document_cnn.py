"""Document stage, CNN part: conv and pool layers shown as grids, never cell by cell.

Reads the convolution forms of the derivation (convolution.py) and writes them as
LaTeX matrices (bmatrix works in Markdown math and in LaTeX) with the words of
the phrase files' [cnn] table. It computes no derivative. Each layer becomes a
list of items {"kind": "text" | "display" | "equation", "content": …} that the
template cnn.j2 prints.
"""

from __future__ import annotations

import numpy as np

from .notation import broken_sum, partial, primed, tex

TERM_BY_TERM_LIMIT = 18  # filter weights written out term by term; more: the first filter only
NAMES_SHOWN = 16  # a flattened vector longer than this is shown as first … last


def _text(content: str) -> dict:
    return {"kind": "text", "content": content}


def _display(content: str) -> dict:
    return {"kind": "display", "content": content}


def _equation(lhs: str, *rhs: str) -> dict:
    """lhs = rhs[0] = rhs[1] = …, one line each (the templates' equation layout)."""
    return {"kind": "equation", "content": {"lhs": lhs, "rhs": list(rhs), "note": ""}}


class CnnView:
    """Grids of the conv/pool layers of a solution's first example."""

    def __init__(self, view):
        self.view = view  # the document.SolutionView
        self.spec = view.spec
        self.n = view.n
        self.t = view.t["cnn"]
        self.solution = view.solution
        self.forms = {f.layer: f for f in view.solution.example.convolutions}
        self.several = len(self.forms) > 1  # several conv/pool layers: Z^{(l)}
        self.loss = view.loss_name

    # Notation -------------------------------------------------------------
    def matrix(self, grid) -> str:
        grid = np.asarray(grid, dtype=float)
        # rounding noise of a sum that is 0 in exact arithmetic (1e-18 beside 0.1) shows as 0
        scale = float(np.max(np.abs(grid))) if grid.size else 0.0
        grid = np.where(np.abs(grid) <= 1e-12 * scale, 0.0, grid)
        rows = [" & ".join(self.n.tex(float(v)) for v in row) for row in grid]
        return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"

    def name(self, letter: str, layer: int, *indices, pad: bool = False) -> str:
        """X, F_{1,2}, Z^{(3)}_{2}: a layer superscript when several CNN layers, channel indices
        only when a layer has several channels (indices of size-1 axes are left out);
        X_{pad} for the zero-padded input."""
        sup = f"^{{({layer})}}" if self.several else ""
        shown = [str(i + 1) for i, count in indices if count > 1]
        shown += [r"\mathrm{pad}"] if pad else []
        return letter + sup + (f"_{{{','.join(shown)}}}" if shown else "")

    def grad(self, what: str) -> str:
        return partial(self.loss, what)

    def fill(self, key: str, **values) -> str:
        from .templating import fill
        return fill(self.t[key], **values)

    @staticmethod
    def size(pair) -> str:
        return f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}\\times{pair[1]}"

    # Network block ----------------------------------------------------------
    def input_summary(self) -> str:
        return self.fill("input_summary", count=len(self.spec.input_names),
                         shape="×".join(map(str, self.spec.input_shape)))

    def summary_line(self, layer) -> str | None:
        label = self.view.layer_label(layer.index)
        if layer.kind == "conv2d":
            return self.fill("conv_summary", label=label, filters=layer.out_channels,
                             kernel=f"{layer.kernel[0]}×{layer.kernel[1]}",
                             channels=layer.in_channels, stride=self.size(layer.stride),
                             padding=self.size(layer.padding),
                             activation=self.view.t["network"]["activations"][layer.activation])
        if layer.kind in ("maxpool2d", "avgpool2d"):
            return self.fill(f"{layer.kind}_summary", label=label,
                             kernel=f"{layer.kernel[0]}×{layer.kernel[1]}",
                             stride=self.size(layer.stride), padding=self.size(layer.padding))
        if layer.kind == "flatten":
            return self.fill("flatten_summary", size=layer.size,
                             shape="×".join(map(str, layer.in_shape)))
        return None

    def input_items(self) -> list[dict]:
        """The input image, one grid per channel."""
        channels = self.spec.input_shape[0]
        values = self.solution.example.values
        x = np.array([values[n] for n in self.spec.input_names]).reshape(self.spec.input_shape)
        items = [_text(self.fill("input_image", shape="×".join(map(str, self.spec.input_shape))))]
        for c in range(channels):
            items.append(_display(f"{self.name('X', 1, (c, channels))} = {self.matrix(x[c])}"))
        return items

    def filter_names(self) -> set[str]:
        names = set()
        for layer in self.spec.layers:
            if layer.kind == "conv2d":
                names.update(np.array(layer.filter_names, dtype=object).ravel().tolist())
                names.update(layer.bias_names)
        return names

    def parameter_items(self) -> list[dict]:
        """Each conv layer's filters as grids and its biases."""
        items = []
        for layer in self.spec.layers:
            if layer.kind != "conv2d":
                continue
            forms = self.forms[layer.index]
            items.append(_text(self.fill("filters_of", label=self.view.layer_label(layer.index))))
            items += self._filter_grids(layer, forms.filters)
            items += self._bias_lines(layer, forms.biases)
        return items

    def _filter_grids(self, layer, filters, prime: bool = False) -> list[dict]:
        items = []
        for o in range(layer.out_channels):
            for c in range(layer.in_channels):
                name = self.name("F", layer.index, (o, layer.out_channels), (c, layer.in_channels))
                items.append(_display(f"{primed(name) if prime else name} = "
                                      f"{self.matrix(filters[o, c])}"))
        return items

    def _bias_lines(self, layer, biases) -> list[dict]:
        if not layer.bias_names:
            return [_text(self.t["no_bias"])]
        return [_display(r",\quad ".join(f"{n} = {self.n.tex(float(b))}"
                                         for n, b in zip(layer.bias_names, biases)))]

    # Forward pass -----------------------------------------------------------
    def forward_group(self, index: int, values) -> dict:
        layer = self.spec.layers[index - 1]
        forms = self.forms[index]
        items = self._conv_forward(layer, forms, values) if layer.kind == "conv2d" \
            else self._pool_forward(layer, forms)
        following = self.spec.layers[index] if index < len(self.spec.layers) else None
        if following is not None and following.kind == "flatten":
            items += self._flatten(following, layer)
        return {"layer": index, "label": self.view.layer_label(index), "equations": [],
                "cnn": items}

    def _conv_forward(self, layer, forms, values) -> list[dict]:
        c_in, o_ch = layer.in_channels, layer.out_channels
        items = [_text(self.fill("conv_intro", stride=self.size(layer.stride),
                                 padding=self.size(layer.padding)))]
        if any(layer.padding):
            items.append(_text(self.fill("padding", padding=self.size(layer.padding))))
            for c in range(c_in):
                items.append(_display(f"{self.name('X', layer.index, (c, c_in), pad=True)} = "
                                      f"{self.matrix(forms.padded_input[c])}"))
        elif layer.index > 1:  # the first layer's input is already shown with the network
            for c in range(c_in):
                items.append(_display(f"{self.name('X', layer.index, (c, c_in))} = "
                                      f"{self.matrix(forms.input[c])}"))
        items.append(_text(self.t["first_cell"]))
        items.append(self._first_cell(layer, forms, values))
        items.append(_text(self.t["other_cells"]))
        for o in range(o_ch):
            z = self.name("Z", layer.index, (o, o_ch))
            sum_over = (r"\sum_{c} " + self.name("X", layer.index) + r"_{c} \star "
                        + self.name("F", layer.index) + f"_{{{o + 1},c}}") if c_in > 1 else \
                (self.name("X", layer.index) + r" \star " + self.name("F", layer.index, (o, o_ch)))
            bias = f" + {layer.bias_names[o]}" if layer.bias_names else ""
            items.append(_display(f"{z} = {sum_over}{bias} = {self.matrix(forms.pre_activation[o])}"))
        if layer.activation != "identity":
            shown = self.view.t["network"]["activations"][layer.activation]
            items.append(_text(self.fill("activation", activation=shown)))
            for o in range(o_ch):
                items.append(_display(f"{self.name('A', layer.index, (o, o_ch))} = f\\left("
                                      f"{self.name('Z', layer.index, (o, o_ch))}\\right) = "
                                      f"{self.matrix(forms.activation_values[o])}"))
        return items

    def _first_cell(self, layer, forms, values) -> dict:
        """z of the first cell: each input of its window times the filter weight over it."""
        symbols = [f"{x} \\cdot {f}" for x, _, f, _ in forms.first_cell]
        numbers = [f"{self._signed(xv)} \\cdot {self._signed(fv)}"
                   for _, xv, _, fv in forms.first_cell]
        if layer.bias_names:
            symbols.append(layer.bias_names[0])
            numbers.append(self._signed(float(forms.biases[0])))
        name = layer.pre_activation_names[0]
        return _equation(name, broken_sum(symbols), broken_sum(numbers), self.n.tex(values[name]))

    def _pool_forward(self, layer, routing) -> list[dict]:
        channels = layer.in_shape[0]
        items = [_text(self.fill(f"{layer.kind}_intro", kernel=f"{layer.kernel[0]}×{layer.kernel[1]}",
                                 stride=self.size(layer.stride), padding=self.size(layer.padding)))]
        for c in range(channels):
            p = self.name("P", layer.index, (c, channels))
            op = r"\operatorname{maxpool}" if layer.kind == "maxpool2d" else r"\operatorname{avgpool}"
            items.append(_display(f"{p} = {op}\\left({self.matrix(routing.input[c])}\\right) = "
                                  f"{self.matrix(routing.output[c])}"))
        return items

    def _flatten(self, flatten, layer) -> list[dict]:
        names = (layer.activation_names if layer.kind == "conv2d" else layer.output_names)
        shown = names if len(names) <= NAMES_SHOWN else names[:3] + [r"\dots"] + names[-1:]
        return [_text(self.fill("flatten", size=flatten.size,
                                next=self.view.layer_label(flatten.index + 1))),
                _display(r"\left(" + ", ".join(shown) + r"\right)")]

    # After the update ---------------------------------------------------------
    def after_items(self, after_steps) -> list[dict]:
        """Each conv/pool layer's maps before → after the step, as grids."""
        before = self.solution.example.values
        after = {s.name: s.value for s in after_steps}
        items = []
        for layer in self.spec.layers:
            if layer.index not in self.forms:
                continue
            items.append(_text(self.fill("after", label=self.view.layer_label(layer.index))))
            if layer.kind == "conv2d":
                blocks = [("Z", layer.pre_activation_names)]
                if layer.activation_names != layer.pre_activation_names:
                    blocks.append(("A", layer.activation_names))
            else:
                blocks = [("P", layer.output_names)]
            channels, rows, columns = layer.out_shape
            for letter, names in blocks:
                for c in range(channels):
                    cells = names[c * rows * columns:(c + 1) * rows * columns]
                    old, new = self._matrix_pair([before[n] for n in cells],
                                                 [after[n] for n in cells], columns)
                    name = self.name(letter, layer.index, (c, channels))
                    items.append(_display(f"{name} = {old} \\quad\\longrightarrow\\quad "
                                          f"{primed(name)} = {new}"))
        return items

    def _matrix_pair(self, old: list[float], new: list[float], columns: int):
        """Two grids with, cell by cell, the digits that show how they differ."""
        pairs = [self.n.pair(a, b) for a, b in zip(old, new)]
        grids = []
        for side in (0, 1):
            rows = [" & ".join(p[side] for p in pairs[k:k + columns])
                    for k in range(0, len(pairs), columns)]
            grids.append(r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}")
        return grids

    # Backward pass ----------------------------------------------------------
    def backward_items(self, section, example) -> list[dict]:
        layer = self.spec.layers[section.layer - 1]
        forms = self.forms[section.layer]
        items = self._arriving(layer, section, example)
        items += self._through_activation(layer, forms)
        items += self._filter_chain(layer, forms)
        items += self._filter_convolution(layer, forms)
        items += self._bias_gradient(layer, forms)
        if forms.input_gradient_needed:
            items += self._input_gradient(layer, forms)
        if len(self.solution.examples) == 1:  # several: the updates follow their combination
            items += self._updates(layer, forms)
        return items

    def other_steps(self, section) -> list:
        """The section's chain-rule steps of quantities outside conv/pool layers (the dense
        layer after a flatten): written out as usual, before the grids."""
        layers = [self.view.graph.nodes[s.target].layer for s in section.steps]
        return [s for s, layer in zip(section.steps, layers)
                if s.kind == "adjoint" and layer is not None and layer not in self.forms]

    def _arriving(self, layer, section, example) -> list[dict]:
        """∂E/∂A of this conv layer's output, from the layers after it (pool, flatten, …)."""
        items = []
        o_ch = layer.out_channels
        after = self.spec.layers[layer.index] if layer.index < len(self.spec.layers) else None
        if after is not None and after.kind in ("maxpool2d", "avgpool2d"):
            routing = self.forms[after.index]
            then = self._next_conv(after.index)
            if then is not None:
                items.append(_text(self.fill("from_next_conv",
                                             label=self.view.layer_label(then.index))))
            else:
                items += self._sample_chain(section, after.output_names[0])
            for c in range(o_ch):
                items.append(_display(f"{self.grad(self.name('P', after.index, (c, o_ch)))} = "
                                      f"{self.matrix(routing.output_gradient[c])}"))
            items.append(_text(self.t[f"{after.kind}_routing"]))
            winners = sorted({w for channel in routing.winners for row in channel
                              for w in row if w is not None}, key=self._position)
            if winners and len(winners) <= NAMES_SHOWN // 2:  # more: the grid shows them
                items.append(_text(self.fill("winners", names=", ".join(
                    f"${w}$" for w in winners))))
            for c in range(o_ch):
                items.append(_display(f"{self.grad(self.name('A', layer.index, (c, o_ch)))} = "
                                      f"{self.matrix(routing.input_gradient[c])}"))
            return items
        if self._next_conv(layer.index) is not None and after.kind == "conv2d":
            items.append(_text(self.fill("from_next_conv", label=self.view.layer_label(after.index))))
        else:
            items += self._sample_chain(section, layer.activation_names[0])
        adjoints = example.adjoints
        grid = np.array([adjoints[n] for n in layer.activation_names]).reshape(layer.out_shape)
        for o in range(o_ch):
            items.append(_display(f"{self.grad(self.name('A', layer.index, (o, o_ch)))} = "
                                  f"{self.matrix(grid[o])}"))
        return items

    def _next_conv(self, index: int):
        """The conv layer right after layer ``index`` (past a flatten: none), if any."""
        following = self.spec.layers[index] if index < len(self.spec.layers) else None
        return following if following is not None and following.kind == "conv2d" else None

    def _position(self, name: str) -> int:
        return self.view.graph.nodes[name].layer or 0, list(self.view.graph.nodes).index(name)

    def _sample_chain(self, section, cell: str) -> list[dict]:
        """The chain rule of one cell, written out in full: the others are alike."""
        step = next((s for s in section.steps if s.target == cell), None)
        if step is None:
            return []
        chain = self.view.chain(step, self.solution.example.values)
        parts = [chain.chain] + ([chain.numbers] if chain.numbers else []) + [chain.value]
        return [_text(self.fill("sample_cell", name=cell)), _equation(chain.symbol, *parts),
                _text(self.t["other_cells_alike"])]

    def _through_activation(self, layer, forms) -> list[dict]:
        o_ch = layer.out_channels
        if layer.activation == "identity":
            return [_text(self.t["identity"])]
        items = [_text(self.t["through_activation"])]
        for o in range(o_ch):
            z, a = self.name("Z", layer.index, (o, o_ch)), self.name("A", layer.index, (o, o_ch))
            items.append(_display(f"{self.grad(z)} = {self.grad(a)} \\odot f'\\left({z}\\right) = "
                                  f"{self.matrix(forms.output_gradient[o])}"))
        return items

    def _filter_chain(self, layer, forms) -> list[dict]:
        """∂E/∂f = Σ ∂E/∂z · x over the feature-map cells each weight touches."""
        count = layer.out_channels * layer.in_channels * layer.kernel[0] * layer.kernel[1]
        names = np.array(layer.filter_names, dtype=object)
        shown = names.ravel().tolist() if count <= TERM_BY_TERM_LIMIT else names[0, 0].ravel().tolist()
        items = [_text(self.t["filter_chain"])]
        for name in dict.fromkeys(shown):
            terms = forms.filter_terms.get(name, [])
            symbols = broken_sum([f"{self.grad(t.output)} \\cdot {t.input}" for t in terms])
            numbers = broken_sum([f"{self._signed(t.output_gradient)} \\cdot "
                                  f"{self._signed(t.input_value)}" for t in terms])
            value = self.n.tex(self.solution.example.gradients[name])
            items.append(_equation(self.grad(name), symbols, numbers, value))
        if count > TERM_BY_TERM_LIMIT:
            items.append(_text(self.t["other_filters_alike"]))
        return items

    def _signed(self, value: float) -> str:
        return tex(self.n.placeholder(value))  # negative numbers in parentheses

    def _filter_convolution(self, layer, forms) -> list[dict]:
        o_ch, c_in = layer.out_channels, layer.in_channels
        strided = layer.stride != (1, 1)
        items = [_text(self.t["as_convolution"])]
        if strided:
            items.append(_text(self.fill("dilated", stride=self.size(layer.stride))))
        for o in range(o_ch):
            for c in range(c_in):
                f = self.name("F", layer.index, (o, o_ch), (c, c_in))
                x = self.name("X", layer.index, (c, c_in), pad=any(layer.padding))
                g = self.grad(self.name("Z", layer.index, (o, o_ch)))
                items.append(_equation(
                    self.grad(f), f"{x} \\star {g}",
                    f"{self.matrix(forms.padded_input[c])} \\star "
                    f"{self.matrix(forms.dilated_output_gradient[o])}",
                    self.matrix(forms.filter_gradient[o, c])))
        items.append(_text(self.t["agree"] if forms.agrees else
                           self.fill("disagree", difference=self.n.tex(forms.max_difference))))
        return items

    def _bias_gradient(self, layer, forms) -> list[dict]:
        if not layer.bias_names:
            return []
        items = [_text(self.t["bias_gradient"])]
        for o, name in enumerate(layer.bias_names):
            z = self.name("Z", layer.index, (o, layer.out_channels))
            items.append(_display(f"{self.grad(name)} = \\sum_{{r,s}} \\left({self.grad(z)}"
                                  f"\\right)_{{r,s}} = {self.n.tex(float(forms.bias_gradient[o]))}"))
        return items

    def _input_gradient(self, layer, forms) -> list[dict]:
        o_ch, c_in = layer.out_channels, layer.in_channels
        items = [_text(self.t["input_gradient"])]
        for c in range(c_in):
            x = self.name("X", layer.index, (c, c_in))
            parts = []
            for o in range(o_ch):
                g = self.grad(self.name("Z", layer.index, (o, o_ch)))
                f = self.name("F", layer.index, (o, o_ch), (c, c_in))
                parts.append(f"\\operatorname{{full}}\\left({g}, "
                             f"\\operatorname{{rot}}_{{180}}\\left({f}\\right)\\right)")
            rotated = r",\quad ".join(
                f"\\operatorname{{rot}}_{{180}}\\left("
                f"{self.name('F', layer.index, (o, o_ch), (c, c_in))}\\right) = "
                f"{self.matrix(forms.rotated_filters[o, c])}" for o in range(o_ch))
            items.append(_display(rotated))
            items.append(_equation(self.grad(x), broken_sum(parts, 2),
                                   self.matrix(forms.input_gradient[c])))
        if any(layer.padding):
            items.append(_text(self.fill("cropped", padding=self.size(layer.padding))))
        return items

    def _updates(self, layer, forms) -> list[dict]:
        after = self.solution.parameters_after
        rate = self.n.tex(self.spec.learning_rate)
        o_ch, c_in = layer.out_channels, layer.in_channels
        items = [_text(self.fill("update", rate=rate))]
        names = np.array(layer.filter_names, dtype=object).ravel()
        new = np.array([after[n] for n in names]).reshape(forms.filters.shape)
        # the gradient of the step: combined over the examples, as the updates of every layer
        gradient = np.array([self.solution.gradients[n] for n in names]).reshape(new.shape)
        for o in range(o_ch):
            for c in range(c_in):
                f = self.name("F", layer.index, (o, o_ch), (c, c_in))
                frozen = all(n in self.spec.frozen for n in np.array(
                    layer.filter_names[o][c], dtype=object).ravel())
                if frozen:
                    items.append(_display(f"{primed(f)} = {f}"))
                    items.append(_text(self.view.t["backward"]["frozen"]))
                    continue
                items.append(_equation(
                    primed(f), f"{f} - \\eta \\cdot {self.grad(f)}",
                    f"{self.matrix(forms.filters[o, c])} - {rate} \\cdot "
                    f"{self.matrix(gradient[o, c])}", self.matrix(new[o, c])))
        for o, name in enumerate(layer.bias_names):
            items.append({"kind": "equation", "content": self.view.update(
                next(u for u in self.solution.updates if u.parameter == name))})
        return items
