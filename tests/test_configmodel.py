"""`ConfigModel` reads each field's docstring as its description, as pydantic's `use_attribute_docstrings`
does, from one parse of the source file, and builds its schema on first use."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, create_model
from pydantic._internal._docs_extraction import extract_docstrings_from_cls

import tldrlab
from tldrlab.configmodel import ConfigModel


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    stack = [cls]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


def test_every_config_class_of_tldrlab_reads_the_docstrings_pydantic_reads() -> None:
    """The descriptions of every ConfigModel in the package are the ones pydantic's own reader finds in each
    class's source (`use_attribute_docstrings`), inherited fields included."""
    package = Path(tldrlab.__file__).parent
    for path in sorted(package.rglob("*.py")):  # the modules declaring one (importing all of them: ~10 s)
        if "ConfigModel)" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            importlib.import_module(".".join(parts).removesuffix(".__init__"))
    classes = [cls for cls in _all_subclasses(ConfigModel) if cls.__module__.startswith("tldrlab.")]
    assert len(classes) >= 60, len(classes)
    compared = 0
    for cls in classes:
        own = extract_docstrings_from_cls(cls, use_inspect=True)  # its own body's, as pydantic reads them
        for name, docstring in own.items():
            info = cls.model_fields.get(name)
            if info is not None and name in cls.__annotations__:  # declared here, not only inherited
                assert info.description == docstring, f"{cls.__qualname__}.{name}"
                compared += 1
    assert compared >= 500, compared


def test_docstrings_reach_the_json_schema_and_an_explicit_description_wins() -> None:
    class Options(ConfigModel):
        steps: int = 3
        """How many steps.

        Indented continuation lines are cleaned as `inspect.cleandoc` cleans them."""
        name: str = Field(default="x", description="given in Field")
        """not read: Field's description stays"""
        plain: int = 1
        "single-quoted strings count too"
        _note: ClassVar[str] = "a class variable is no field"
        """nor is this a field's docstring"""
        undocumented: bool = False

    schema = Options.model_json_schema()["properties"]
    assert schema["steps"]["description"] == (
        "How many steps.\n\nIndented continuation lines are cleaned as `inspect.cleandoc` cleans them."
    )
    assert schema["name"]["description"] == "given in Field"
    assert schema["plain"]["description"] == "single-quoted strings count too"
    assert "description" not in schema["undocumented"]


def test_two_classes_of_one_name_each_get_their_own_docstrings() -> None:
    made: list[type[ConfigModel]] = []
    for _ in range(1):

        class Same(ConfigModel):
            a: int = 0
            """first class's a"""

        made.append(Same)

    class Same(ConfigModel):  # type: ignore[no-redef]
        a: int = 0
        """second class's a"""

    made.append(Same)
    assert [cls.model_fields["a"].description for cls in made] == ["first class's a", "second class's a"]


def test_a_subclass_keeps_its_bases_docstrings_and_adds_its_own() -> None:
    class Base(ConfigModel):
        a: int = 0
        """the base's a"""

    class Child(Base):
        b: int = 0
        """the child's b"""

    class Override(Base):
        a: int = 1

    assert Child.model_fields["a"].description == "the base's a"
    assert Child.model_fields["b"].description == "the child's b"
    assert Override.model_fields["a"].description is None  # as pydantic's own reader leaves it


def test_a_class_without_source_has_no_descriptions() -> None:
    made: Any = create_model("Made", __base__=ConfigModel, a=(int, 0))
    assert made.model_fields["a"].description is None
    assert made(a=2).a == 2


def test_the_schema_is_built_on_first_use_not_at_import() -> None:
    """Importing the command line builds no config class's schema; validating one builds it then."""
    code = (
        "import tldrlab.cli.main\n"
        "from tldrlab.train.config import TrainConfig\n"
        "from pydantic._internal._mock_val_ser import MockValSer\n"
        "print(isinstance(TrainConfig.__pydantic_validator__, MockValSer))\n"
        "TrainConfig(max_steps=2)\n"
        "print(isinstance(TrainConfig.__pydantic_validator__, MockValSer))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


def test_config_model_is_a_pydantic_model() -> None:
    assert issubclass(ConfigModel, BaseModel)
