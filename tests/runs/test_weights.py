"""Weights files take the umask like a plain open(), through one mechanism (`tldrlab.runs.weights`).

safetensors' writer makes its files 0600 whatever the umask; every call site once had to remember to fix
that (`honour_umask` after each write), and one that forgot left weights a group-shared home's other users
could not read. The contract test below fails on a call site that writes safetensors, calls a library's
`save_pretrained` or fixes modes itself anywhere but in the mechanism.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import tldrlab
from tldrlab.runs.weights import save_module_safetensors, save_pretrained, save_safetensors

SRC = Path(tldrlab.__file__).parent
MECHANISM = {"runs/weights.py", "runs/atomic.py"}
SAFETENSORS_WRITERS = {"save_file", "save_model", "save"}


def forgotten_modes(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) of every write of weights that bypasses `tldrlab.runs.weights` in a module's tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "safetensors":
            for alias in node.names:
                if alias.name in SAFETENSORS_WRITERS:
                    yield node.lineno, f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.Attribute):
            if node.attr in SAFETENSORS_WRITERS and "safetensors" in ast.unparse(node.value):
                yield node.lineno, ast.unparse(node)
            elif node.attr == "save_pretrained":
                yield node.lineno, f"{ast.unparse(node)}(...)"
            elif node.attr == "honour_umask":
                yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.Name) and node.id == "honour_umask":
            yield node.lineno, "honour_umask"
        elif isinstance(node, ast.alias) and node.name == "honour_umask":
            yield getattr(node, "lineno", 0), "import honour_umask"


# untraced (`no_cover`): it reads tldrlab's source with `ast` and runs none of it, so coverage measures
# nothing here, while tracing made its walk over every module's syntax tree two to three times slower
@pytest.mark.no_cover
def test_no_module_writes_weights_or_fixes_modes_past_the_mechanism() -> None:
    found = [
        f"{path.relative_to(SRC).as_posix()}:{line}: {what}"
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).as_posix() not in MECHANISM
        for line, what in forgotten_modes(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert found == [], (
        "write weights with tldrlab.runs.weights (save_safetensors, save_module_safetensors, "
        f"save_pretrained), which gives them the umask's mode: {found}"
    )


@pytest.mark.parametrize(
    "source",
    [
        "from safetensors.torch import save_file\nsave_file({}, 'x')",
        "import safetensors.torch\nsafetensors.torch.save_model(m, 'x')",
        "from safetensors.numpy import save_file as write\n",
        "model.save_pretrained(str(out), safe_serialization=True)",
        "from tldrlab.runs.atomic import honour_umask\nhonour_umask(out)",
        "from tldrlab.runs import atomic\natomic.honour_umask(out)",
    ],
)
def test_the_contract_test_sees_each_way_of_bypassing_it(source: str) -> None:
    assert list(forgotten_modes(ast.parse(source)))


def test_weights_files_take_the_umask_and_replace_the_old_file_whole(tmp_path: Path) -> None:
    import torch
    from safetensors import safe_open

    previous = os.umask(0o027)  # group may read, others nothing: not the usual 022, so no default passes
    try:
        path = tmp_path / "deep" / "w.safetensors"
        save_safetensors({"a": torch.arange(4.0)}, path, metadata={"note": "one"})
        assert path.stat().st_mode & 0o777 == 0o640
        with safe_open(str(path), framework="pt") as handle:
            assert handle.metadata() == {"note": "one"} and handle.get_tensor("a").tolist() == [0, 1, 2, 3]
        with pytest.raises(RuntimeError):  # a failed write (tensors sharing memory) leaves the old file whole
            shared = torch.zeros(4)
            save_safetensors({"a": shared, "b": shared}, path)
        with safe_open(str(path), framework="pt") as handle:
            assert handle.get_tensor("a").tolist() == [0, 1, 2, 3]
        assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]  # no temporary file left

        tied = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5, bias=False))
        tied[1].weight = tied[0].weight  # tied embeddings, stored once
        save_module_safetensors(tied, tmp_path / "tied.safetensors")
        assert (tmp_path / "tied.safetensors").stat().st_mode & 0o777 == 0o640
        from safetensors.torch import load_model

        loaded = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5, bias=False))
        loaded[1].weight = loaded[0].weight
        load_model(loaded, str(tmp_path / "tied.safetensors"))
        assert torch.equal(loaded[0].weight, tied[0].weight)
    finally:
        os.umask(previous)


def test_save_pretrained_fixes_what_it_wrote_and_leaves_a_users_files_alone(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_positions=8))
    out = tmp_path / "out"  # a user's --out: their own directory and file, private on purpose
    out.mkdir(mode=0o700)
    (out / "notes.txt").write_text("mine")
    os.chmod(out / "notes.txt", 0o600)
    previous = os.umask(0o027)
    try:
        save_pretrained(model, out, safe_serialization=True)
        save_pretrained(model, out / "copy", safe_serialization=True)  # a directory the library creates
    finally:
        os.umask(previous)
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o640  # safetensors made it 0600
    assert (out / "config.json").stat().st_mode & 0o777 == 0o640
    assert (out / "notes.txt").stat().st_mode & 0o777 == 0o600
    assert out.stat().st_mode & 0o777 == 0o700
    assert (out / "copy").stat().st_mode & 0o777 == 0o750
    assert (out / "copy" / "model.safetensors").stat().st_mode & 0o777 == 0o640


def _flattened_like_cudnn(lstm: torch.nn.LSTM) -> None:
    """Point every weight of `lstm` into one flat buffer, as cuDNN does when an LSTM is moved to CUDA
    (`flatten_parameters`): on this CPU machine the buffer is made by hand, the layout is the same."""
    weights = list(lstm.parameters())
    flat = torch.cat([w.detach().reshape(-1) for w in weights])
    start = 0
    for weight in weights:
        weight.data = flat[start : start + weight.numel()].view_as(weight)
        start += weight.numel()


def test_weights_that_are_views_of_one_buffer_are_saved_and_load_back(tmp_path: Path) -> None:
    """A char_lstm trained on CUDA could not be saved: its weights are views of cuDNN's flat buffer and
    safetensors' save_model refused them ("None is covering the entire storage"), seen on an H200."""
    from safetensors.torch import load_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.LSTM(4, 3, num_layers=2))
    _flattened_like_cudnn(model[1])
    expected = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}

    save_module_safetensors(model, tmp_path / "model.safetensors")

    fresh = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.LSTM(4, 3, num_layers=2))
    load_model(fresh, str(tmp_path / "model.safetensors"))
    assert fresh.state_dict().keys() == expected.keys()
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    # the model being trained is left as it was (still one flat buffer)
    storages = {w.untyped_storage().data_ptr() for w in model[1].parameters()}
    assert len(storages) == 1


def test_tied_weights_stay_stored_once_beside_views_of_one_buffer(tmp_path: Path) -> None:
    from safetensors import safe_open

    model = torch.nn.Sequential(
        torch.nn.Embedding(6, 4), torch.nn.LSTM(4, 4), torch.nn.Linear(4, 6, bias=False)
    )
    model[2].weight = model[0].weight  # tied, as a language model's input and output embeddings
    _flattened_like_cudnn(model[1])

    save_module_safetensors(model, tmp_path / "model.safetensors")

    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as stored:
        keys = set(stored.keys())
    assert len(keys & {"0.weight", "2.weight"}) == 1
    assert {"1.weight_ih_l0", "1.weight_hh_l0", "1.bias_ih_l0", "1.bias_hh_l0"} <= keys
