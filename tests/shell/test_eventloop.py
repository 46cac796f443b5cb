"""``shell/eventloop.py``: which loop each choice runs, and uvloop asked for but missing."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from lanesync.cli.common import LOOP_OPTION
from lanesync.errors import UsageError
from lanesync.shell.eventloop import (
    DEFAULT_LOOP,
    LOOP_ENV,
    LoopChoice,
    choose_loop,
    loop_choice_from_env,
    run_on,
    running_loop_name,
)


async def loop_type_and_name() -> tuple[type[asyncio.AbstractEventLoop], str]:
    return type(asyncio.get_running_loop()), running_loop_name()


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (LoopChoice.AUTO, uvloop.Loop),
        (LoopChoice.UVLOOP, uvloop.Loop),
        (LoopChoice.ASYNCIO, asyncio.SelectorEventLoop),
    ],
)
def test_each_choice_runs_its_loop_and_names_it(
    choice: LoopChoice, expected: type[asyncio.AbstractEventLoop]
) -> None:
    chosen = choose_loop(choice)
    loop_type, name = run_on(chosen, loop_type_and_name())
    assert loop_type is expected
    assert name == chosen.name
    assert name.startswith("uvloop 0.") if expected is uvloop.Loop else name == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # ``import uvloop`` now raises ImportError
    auto = choose_loop(LoopChoice.AUTO)
    assert auto.name == "asyncio"
    assert run_on(auto, loop_type_and_name()) == (asyncio.SelectorEventLoop, "asyncio")
    with pytest.raises(UsageError, match=r"uvloop .* is not installed"):
        choose_loop(LoopChoice.UVLOOP)


def test_the_environment_variable_chooses_and_a_bad_value_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(LOOP_ENV, raising=False)
    assert loop_choice_from_env() is DEFAULT_LOOP is LoopChoice.ASYNCIO
    monkeypatch.setenv(LOOP_ENV, "uvloop")
    assert loop_choice_from_env() is LoopChoice.UVLOOP
    monkeypatch.setenv(LOOP_ENV, "trio")
    with pytest.raises(UsageError, match="LANESYNC_LOOP='trio'"):
        loop_choice_from_env()


def test_the_cli_option_offers_the_choices_and_default_and_reads_the_environment() -> None:
    # The option spells the values out so the CLI starts without importing asyncio.
    def command(loop: str) -> None:
        del loop

    option = LOOP_OPTION(command).__click_params__[0]  # type: ignore[attr-defined]
    assert list(option.type.choices) == [c.value for c in LoopChoice]
    assert option.default == DEFAULT_LOOP.value
    assert option.envvar == LOOP_ENV
