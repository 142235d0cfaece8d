"""Blocks of numbers and names read in bulk (a 784-256-10 MLP's 200,000 weights in
milliseconds): the same values, names and one-line errors as reading them entry by entry."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from backprop_explain import validate
from backprop_explain.errors import SpecError
from backprop_explain.spec import spec_from_dict
from backprop_explain.validate import Place, _fill_pattern


def network(*changes):
    """A small MLP's spec, with (layer, key, value) changes."""
    data = {"inputs": {"values": [1, 2]},
            "layers": [{"type": "dense", "units": 2, "weights": [[1, 2], [3, 4]],
                        "biases": [0, 0]},
                       {"type": "dense", "units": 1, "weights": [[1, 2]]}],
            "loss": {"type": "half_squared_error", "targets": [1]},
            "training": {"learning_rate": 0.1}}
    for layer, key, value in changes:
        data["layers"][layer][key] = value
    return data


# the messages reading entry by entry gave (main before bulk reading)
ERRORS = {
    "shared within a block": (
        [(0, "names", {"weights": "w_{#j}"})],
        "layers[0].weights[0][1]: the value 1.0 given for the shared parameter w_{1} at "
        "layers[0].weights[0][0], got 2.0"),
    "shared across blocks": (
        [(1, "names", {"weights": "w^{(1)}_{#j,#i}"}), (1, "weights", [[1, 5]])],
        "layers[1].weights[0][1]: the value 2.0 given for the shared parameter w^{(1)}_{1,2} "
        "at layers[0].weights[0][1], got 5.0"),
    "a quantity twice": (
        [(1, "names", {"pre_activations": "z^{(1)}_{#j}"})],
        "top level: distinct names, but 'z^{(1)}_{1}' names both a quantity of layer 1 and "
        "a quantity of layer 2"),
    "a parameter named as an input": (
        [(0, "names", {"biases": "x_{1}"})],
        "top level: distinct names, but 'x_{1}' names both input x_{1} and a parameter"),
    "a boolean": ([(0, "weights", [[1, True], [3, 4]])],
                  "layers[0].weights[0][1]: a number, got the boolean true"),
    "not a number": ([(0, "weights", [[1, float("nan")], [3, 4]])],
                     "layers[0].weights[0][1]: a finite number (at most about 1.8e308), got nan"),
    "a row too long": ([(0, "weights", [[1, 2], [3, 4, 5]])],
                       "layers[0].weights[1]: a nested list of shape 2, got 3 entries"),
    "a list for a number": ([(0, "weights", [[1, 2], [3, [4]]])],
                            "layers[0].weights[1][1]: a number, got a list"),
    "a tuple for a row": ([(0, "weights", [[1, 2], (3, 4)])],
                          "layers[0].weights[1]: a nested list of shape 2, got (3, 4)"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_name_the_entry_as_before(case):
    changes, message = ERRORS[case]
    with pytest.raises(SpecError) as error:
        spec_from_dict(network(*changes))
    assert str(error.value) == f"<spec>: {message}"


def test_shared_names_with_equal_values_are_one_parameter():
    data = network((1, "names", {"weights": "w^{(1)}_{#j,#i}"}))
    assert list(spec_from_dict(data).parameters) == [
        "w^{(1)}_{1,1}", "w^{(1)}_{1,2}", "w^{(1)}_{2,1}", "w^{(1)}_{2,2}", "b^{(1)}_{1}",
        "b^{(1)}_{2}", "b^{(2)}_{1}"]


@pytest.mark.parametrize("value,shape", [
    ([[1, 2.5], [-3, 4e-300]], (2, 2)), ([[[0]], [[1]]], (2, 1, 1)), ([7, 8, 9], (3,)),
    ([[1, 2], [3]], (2, 2)), ([[1, "2"]], (1, 2)), ([[1, float("inf")]], (1, 2)),
    ([[1, False]], (1, 2)), ([1, 2], (2, 1)), (3, (1,)), ([[2 ** 70, 1]], (1, 2)),
])
def test_bulk_reading_agrees_with_entry_by_entry(monkeypatch, value, shape):
    place = Place("s.toml", "weights")

    def read():
        try:
            return place.array(value, shape)
        except SpecError as error:
            return str(error)

    bulk = read()
    monkeypatch.setattr(validate, "plain_numbers", lambda value, shape: None)
    walked = read()
    assert bulk == walked
    assert type(bulk) is str or np.array(bulk).shape == shape


def _fill_pattern_entry_by_entry(pattern, shape, letters, layer):
    """Names as they were filled before: the placeholders replaced name by name."""
    def fill(prefix, depth):
        if depth == len(shape):
            name = pattern if layer is None else pattern.replace("#l", str(layer))
            for letter, index in zip(letters, prefix):
                name = name.replace("#" + letter, str(index + 1))
            return name
        return [fill(prefix + (k,), depth + 1) for k in range(shape[depth])]
    return fill((), 0)


@pytest.mark.parametrize("pattern", [
    "w^{(#l)}_{#j,#i}", "w_{#i,#j}", "w_{#j}", "c", "{#i}{#i}#j", "##j", "#l#j#i", "f_{#o,#c,#r,#s}",
    "x^{(#c)}_{#r,#s}", "{0}_{#j}", "a_{#r,#s}}", "#x_{#j}"])
def test_names_from_a_pattern_as_before(pattern):
    for shape, letters in [((3, 4), "ji"), ((2,), "j"), ((2, 2, 3), "crs"),
                           ((2, 1, 2, 2), "ocrs"), ((), "")]:
        for layer in (None, 12):
            assert (_fill_pattern(pattern, shape, letters, layer)
                    == _fill_pattern_entry_by_entry(pattern, shape, letters, layer))


def test_a_large_block_is_read_whole():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(64, 50)).tolist()
    spec = spec_from_dict({"inputs": {"values": [0.5] * 50},
                           "layers": [{"type": "dense", "weights": weights}],
                           "loss": {"type": "half_squared_error", "targets": [0] * 64},
                           "training": {"learning_rate": 0.1}})
    values = list(spec.parameters.values())
    assert values == [w for row in weights for w in row] + [0.0] * 64
    names = itertools.islice(spec.parameters, 0, None, 51)
    assert list(names)[:2] == ["w^{(1)}_{1,1}", "w^{(1)}_{2,2}"]


def test_the_spec_keeps_a_copy_of_its_document():
    data = network((0, "names", {"weights": [["p", "q"], ["r", "s"]]}))
    data["examples"] = [{"inputs": [1, 2], "targets": [0.5]}]
    spec = spec_from_dict(data)
    assert spec.document == data
    data["layers"][0]["weights"][1][0] = 9.0  # the caller's dict changes afterwards
    data["layers"][0]["names"]["weights"][0][1] = "t"
    data["examples"][0]["inputs"].append(3)
    assert spec.document["layers"][0]["weights"] == [[1, 2], [3, 4]]
    assert spec.document["layers"][0]["names"]["weights"] == [["p", "q"], ["r", "s"]]
    assert spec.document["examples"][0]["inputs"] == [1, 2]
