"""ncl.Library and ncl.compile of source text: the user's functions (from objects, source text, a file) compile into
one image with the built-in library or without; they run equal to Python on the VM and on the soft machine, alone
and from the image's entries; compile errors name the function and the line; an augmented model takes the library
and saves its image and source."""

import random
import textwrap

import pytest
import torch
import torch.nn.functional as F

import ncl
from ncl.library.user import Library
from ncl.machine import MachineConfig, vm

CONFIG = MachineConfig(n=64, cells=16, registers=8, stack=16)


def max3(a, b, c):
    return max(max(a, b), c)


def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def spread(a, b, c):
    return max3(a, b, c) - min(min(a, b), c)


USER = [max3, clamp, spread]

SOURCE = textwrap.dedent("""
    def tri(k):
        total = 0
        i = 1
        while i <= k:
            total = total + _step(i)
            i = i + 1
        return total

    def _step(i):
        return i
""")


def cases(count=12, seed=0):
    rng = random.Random(seed)
    return [tuple(rng.randrange(CONFIG.n) for _ in range(3)) for _ in range(count)]


@pytest.fixture(scope="module")
def lib():
    return Library.from_functions(USER, builtins=False)


def test_user_functions_equal_python_alone(lib):
    for name, fn in (("max3", max3), ("clamp", clamp), ("spread", spread)):
        compiled = lib.compile(name, CONFIG)
        for args in cases():
            expected = fn(*args) % CONFIG.n
            assert compiled(*args) == expected, (name, args)                  # the VM
            assert compiled.execute(*args).value == expected, (name, args)    # the soft machine, one-hot inputs


def test_user_functions_equal_python_from_the_image(lib):
    image = lib.image(CONFIG)
    assert list(image.entries) == ["max3", "clamp", "spread"]
    for name, fn in (("max3", max3), ("clamp", clamp), ("spread", spread)):
        args = cases(6, seed=1)
        regs = torch.zeros(len(args), CONFIG.registers, dtype=torch.long)
        regs[:, 1:4] = torch.tensor(args)
        soft = image.run(F.one_hot(regs, CONFIG.n).float(), F.one_hot(torch.zeros(len(args), CONFIG.cells,
                                                                                 dtype=torch.long), CONFIG.n).float(),
                         ip=F.one_hot(torch.full((len(args),), image.entries[name]), image.length).float(),
                         max_steps=200)
        for i, a in enumerate(args):
            expected = fn(*a) % CONFIG.n
            hard = vm.run(image, regs=[0, *a], ip=image.entries[name], max_steps=200)
            assert hard.regs[0] == expected
            assert int(soft.r0[i].argmax()) == expected


def test_with_builtins_and_from_source_text():
    lib = Library.from_source(SOURCE)
    assert lib.names()[:len(ncl.library.names())] == ncl.library.names()
    assert lib.names()[-1] == "tri" and "_step" not in lib.names()  # a _helper gets no entry
    tri = lib.compile("tri", CONFIG)
    for k in (0, 1, 5, 10):
        assert tri(k) == tri.execute(k).value == k * (k + 1) // 2 % CONFIG.n
    assert lib.source == SOURCE
    image = lib.image(CONFIG)
    assert image.entries["tri"] > image.entries["gcd"]


def test_ncl_compile_takes_source_text():
    f = ncl.compile("def double(x):\n    return twice(x)\n\ndef twice(y):\n    return y + y\n", config=CONFIG)
    assert f(7) == f.execute(7).value == 14


def test_functions_without_source_are_pointed_to_source_text():
    namespace = {}
    exec("def hidden(x):\n    return x\n", namespace)  # no file: inspect finds no source
    with pytest.raises(ncl.CompileError, match="Library.from_source"):
        Library.from_functions([namespace["hidden"]])


def test_compile_errors_name_the_function_and_line(tmp_path):
    bad = "def ok(x):\n    return x\n\ndef broken(x):\n    y = [1, 2]\n    return x\n"
    with pytest.raises(ncl.CompileError, match=r":5: in broken\(\)"):
        Library.from_source(bad, builtins=False).image(CONFIG)
    with pytest.raises(ncl.CompileError, match=r"<ncl source \w+>:2: in broken\(\)"):
        ncl.compile("def broken(x):\n    y = [1, 2]\n    return x\n", config=CONFIG)
    with pytest.raises(ValueError, match="does not parse"):
        Library.from_source("def f(:\n")
    path = tmp_path / "mylib.py"
    path.write_text(bad)
    with pytest.raises(ncl.CompileError, match=r"mylib\.py:5: in broken\(\)"):
        Library.from_module(path, builtins=False).image(CONFIG)


def test_bad_libraries_get_clear_errors():
    with pytest.raises(ValueError, match="built-in library function"):
        Library.from_source("def gcd(a, b):\n    return a\n")
    with pytest.raises(ValueError, match="at least one"):
        Library.from_functions([])
    with pytest.raises(ValueError, match="defines no function"):
        Library.from_source("x = 1\n")


def test_augmented_model_runs_and_saves_a_user_library(tmp_path):
    transformers = pytest.importorskip("transformers")
    from ncl.hf import AugmentedModel, augment
    from ncl.tokenizers import CharTokenizer

    tok = CharTokenizer()
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2)
    lib = Library.from_functions(USER, builtins=False)
    model = augment(transformers.LlamaForCausalLM(config).eval(), tok, library=lib, split=1, max_steps=32)
    assert model.computer.program_names == ["max3", "clamp", "spread"]
    assert model.computer.program_head.out_features == 3
    ids, mask = tok.encode_batch(["max3 4 9 2 =", "clamp 7 1 5 ="], add_bos=True)
    with torch.no_grad():
        logits = model(ids, mask).logits
    model.save_pretrained(tmp_path / "m")
    assert "def clamp(x, lo, hi):" in (tmp_path / "m" / "library.py").read_text()
    again = AugmentedModel.from_pretrained(tmp_path / "m")
    assert again.computer.program_names == ["max3", "clamp", "spread"]
    assert again.computer.library.disassemble() == model.computer.library.disassemble()
    with torch.no_grad():
        assert torch.equal(again(ids, mask).logits, logits)


def test_a_neural_computer_runs_a_user_library():
    """NeuralComputer(library=...) takes a user's image: its programs are the user's entries, and an image
    compiled for another machine is refused by name."""
    import torch

    from ncl.computer import ComputerConfig, NeuralComputer
    from ncl.library.user import Library

    cfg = ComputerConfig(max_steps=64)
    src = "def twice_plus(a, b):\n    return a + a + b\n"
    image = Library.from_source(src, builtins=False).image(cfg.machine)
    comp = NeuralComputer(16, cfg, library=image)
    assert comp.program_names == ["twice_plus"] and comp.program_head.out_features == 1
    out = comp(torch.randn(2, 5, 16), torch.ones(2, 5), torch.tensor([[0, 0, 0, 1, 1]] * 2))
    assert out.readout.shape == (2, 5, 16)
    other = Library.from_source(src, builtins=False).image(cfg.machine.__class__(n=64, cells=16))
    with pytest.raises(ValueError, match="library: compiled for"):
        NeuralComputer(16, cfg, library=other)
