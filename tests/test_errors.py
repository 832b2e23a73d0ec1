"""Validation errors read as their validators wrote them: pydantic's own prefixes ("Value error, ",
"Assertion failed, ") are not part of the message a user sees (the CLI's line, the API's `message`)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator, model_validator

from tldrlab.errors import error_message, validation_problems


class Section(BaseModel):
    size: int

    @field_validator("size")
    @classmethod
    def _even(cls, size: int) -> int:
        if size % 2:
            raise ValueError(f"size {size} must be even")
        return size


class Config(BaseModel):
    section: Section
    ratio: float = 0.5

    @model_validator(mode="after")
    def _ratio_below_one(self) -> Config:
        if self.ratio >= 1:
            raise ValueError("ratio must be below 1")
        return self


def test_messages_are_the_validators_own_words_at_their_field_paths() -> None:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate({"section": {"size": 3}})
    assert validation_problems(caught.value) == "section.size: size 3 must be even"
    assert validation_problems(caught.value, prefix=("train",)) == "train.section.size: size 3 must be even"

    with pytest.raises(ValidationError) as caught:
        Config.model_validate({"section": {"size": 2}, "ratio": 2})
    assert validation_problems(caught.value) == "(config): ratio must be below 1"


def test_pydantic_s_own_messages_are_kept_as_they_are() -> None:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate({"section": {"size": "x"}, "ratio": "y"})
    messages = [error_message(e) for e in caught.value.errors()]
    assert messages == [
        "Input should be a valid integer, unable to parse string as an integer",
        "Input should be a valid number, unable to parse string as a number",
    ]


def _refuse_in_a_worker_process() -> None:
    from tldrlab.errors import InvalidConfigError

    raise InvalidConfigError.at("budget_steps", "must be at least 1")


def test_a_refusal_raised_in_a_worker_process_reaches_the_parent_as_itself() -> None:
    """`experiment --jobs N` trains seeds in worker processes whose errors come back pickled: an
    InvalidConfigError could not be rebuilt (its `errors` argument is keyword-only), so the pool broke ("A
    process in the process pool was terminated abruptly") and the experiment failed with an unexpected
    error, its traceback logged, in place of the refusal's one line."""
    from concurrent.futures import ProcessPoolExecutor

    from tldrlab.errors import InvalidConfigError
    from tldrlab.threads import worker_process_context

    with (
        ProcessPoolExecutor(max_workers=1, mp_context=worker_process_context()) as pool,
        pytest.raises(InvalidConfigError) as caught,
    ):
        pool.submit(_refuse_in_a_worker_process).result()
    refusal = caught.value
    assert refusal.message == "budget_steps: must be at least 1" and refusal.exit_code == 2
    assert refusal.details == {"errors": [{"loc": ["budget_steps"], "msg": "must be at least 1"}]}
