"""Replay: a record's state at T from before/after changes, gaps, ordering, JSON equality."""

from __future__ import annotations

import copy
import pickle
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from indelible.core.replay import MISSING, Change, EntityState, Gap, Step, replay

T0 = 1_795_460_700_000


def step(seq: int, at: int, action: str, *changes: dict[str, Any]) -> Step:
    """A step built the way callers build one: from an Event-format dict."""
    return Step.from_event(seq, T0 + at, {"action": action, "changes": list(changes)})


def invoice_history() -> list[Step]:
    return [
        step(
            1, 0, "create", {"field": "status", "after": "draft"}, {"field": "total", "after": 10}
        ),
        step(2, 100, "update", {"field": "status", "before": "draft", "after": "sent"}),
        step(3, 200, "update", {"field": "total", "before": 10, "after": 12}),
    ]


# -- the sentinel ---------------------------------------------------------------------------


def test_missing_reads_as_its_name_and_survives_copy_and_pickle() -> None:
    assert repr(MISSING) == "MISSING"
    assert copy.deepcopy(MISSING) is MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING


# -- Step.from_event ------------------------------------------------------------------------


def test_step_from_event_marks_absent_before_and_after_missing() -> None:
    event = {
        "action": "update",
        "changes": [{"field": "a", "after": 1}, {"field": "b", "before": None}],
    }
    built = Step.from_event(4, T0, event)
    assert built == Step(4, T0, "update", (Change("a", MISSING, 1), Change("b", None, MISSING)))


def test_step_from_event_skips_malformed_change_items() -> None:
    event = {
        "action": "update",
        "changes": ["status", {"field": 3, "after": 1}, {"after": 2}, {"field": "ok", "after": 3}],
    }
    assert Step.from_event(1, T0, event).changes == (Change("ok", MISSING, 3),)


def test_step_from_event_without_changes_or_with_changes_not_a_list() -> None:
    assert Step.from_event(1, T0, {"action": "read"}).changes == ()
    assert Step.from_event(1, T0, {"action": "update", "changes": {"field": "a"}}).changes == ()


def test_step_from_event_with_action_not_a_string_reads_as_empty() -> None:
    assert Step.from_event(1, T0, {"action": 7}).action == ""
    assert Step.from_event(1, T0, {}).action == ""


# -- state at T -----------------------------------------------------------------------------


def test_create_then_updates_state_at_each_time() -> None:
    history = invoice_history()
    assert replay(history, T0).fields == {"status": "draft", "total": 10}
    assert replay(history, T0 + 150).fields == {"status": "sent", "total": 10}
    final = replay(history, T0 + 10_000)
    assert final == EntityState(
        T0 + 10_000, True, {"status": "sent", "total": 12}, (1, 2, 3), (), True
    )


def test_time_before_the_first_event_gives_nothing() -> None:
    assert replay(invoice_history(), T0 - 1) == EntityState(T0 - 1, None, {}, (), (), False)


def test_no_steps_gives_nothing() -> None:
    assert replay([], T0) == EntityState(T0, None, {}, (), (), False)


def test_step_exactly_at_t_is_applied() -> None:
    assert replay(invoice_history(), T0 + 200).seqs == (1, 2, 3)
    assert replay(invoice_history(), T0 + 199).seqs == (1, 2)


def test_delete_then_state_after_does_not_exist() -> None:
    history = [*invoice_history(), step(4, 300, "delete", {"field": "status", "before": "sent"})]
    state = replay(history, T0 + 300)
    assert state.exists is False
    assert state.fields == {"total": 12}  # a delete removes only the fields its changes remove
    assert state.seqs == (1, 2, 3, 4)
    assert state.gaps == ()


def test_delete_without_changes_is_used_and_keeps_fields() -> None:
    state = replay([*invoice_history(), step(4, 300, "delete")], T0 + 300)
    assert (state.exists, state.seqs) == (False, (1, 2, 3, 4))
    assert state.fields == {"status": "sent", "total": 12}


def test_update_after_delete_is_applied_and_record_stays_deleted() -> None:
    history = [
        *invoice_history(),
        step(4, 300, "delete"),
        step(5, 400, "update", {"field": "total", "before": 12, "after": 0}),
    ]
    state = replay(history, T0 + 400)
    assert (state.exists, state.fields["total"], state.gaps) == (False, 0, ())


def test_create_after_delete_exists_again() -> None:
    history = [*invoice_history(), step(4, 300, "delete"), step(5, 400, "create")]
    assert replay(history, T0 + 400).exists is True


def test_create_without_changes_is_used_and_complete() -> None:
    state = replay([step(1, 0, "create")], T0)
    assert state == EntityState(T0, True, {}, (1,), (), True)


def test_steps_without_changes_are_not_in_seqs() -> None:
    history = [*invoice_history(), step(4, 50, "read"), step(5, 60, "update")]
    state = replay(history, T0 + 1000)
    assert state.seqs == (1, 2, 3)


def test_a_skipped_first_step_does_not_decide_completeness() -> None:
    history = [step(1, 0, "read"), step(2, 10, "create", {"field": "a", "after": 1})]
    assert replay(history, T0 + 10).complete is True


def test_change_without_after_removes_the_field() -> None:
    history = [
        step(1, 0, "create", {"field": "note", "after": "hi"}, {"field": "n", "after": 1}),
        step(2, 10, "update", {"field": "note", "before": "hi"}),
    ]
    state = replay(history, T0 + 10)
    assert state.fields == {"n": 1}
    assert "note" not in state.to_dict()["fields"]


def test_the_same_field_twice_in_one_event_is_applied_in_order() -> None:
    history = [
        step(
            1,
            0,
            "create",
            {"field": "a", "after": 1},
            {"field": "a", "before": 1, "after": 2},
        )
    ]
    state = replay(history, T0)
    assert (state.fields, state.gaps) == ({"a": 2}, ())


# -- ordering -------------------------------------------------------------------------------


def test_ties_on_occurred_at_are_broken_by_seq_whatever_the_input_order() -> None:
    history = [
        step(9, 0, "update", {"field": "a", "before": 2, "after": 3}),
        step(7, 0, "create", {"field": "a", "after": 1}),
        step(8, 0, "update", {"field": "a", "before": 1, "after": 2}),
    ]
    for ordering in (history, history[::-1], sorted(history, key=lambda s: s.action)):
        state = replay(ordering, T0)
        assert (state.seqs, state.fields, state.gaps) == ((7, 8, 9), {"a": 3}, ())


def test_time_orders_before_seq() -> None:
    history = [
        step(1, 100, "update", {"field": "a", "before": 1, "after": 2}),
        step(2, 0, "create", {"field": "a", "after": 1}),
    ]
    state = replay(history, T0 + 100)
    assert (state.seqs, state.complete, state.fields) == ((2, 1), True, {"a": 2})


# -- gaps -----------------------------------------------------------------------------------


def test_gap_is_reported_with_expected_and_found_and_replay_continues() -> None:
    history = [
        *invoice_history(),
        step(4, 300, "update", {"field": "total", "before": 99, "after": 100}),
        step(5, 400, "update", {"field": "total", "before": 100, "after": 101}),
    ]
    state = replay(history, T0 + 400)
    assert state.gaps == (Gap(4, "total", 12, 99),)
    assert state.fields["total"] == 101
    assert state.seqs == (1, 2, 3, 4, 5)


def test_complete_history_unknown_field_with_value_before_is_a_gap() -> None:
    history = [
        step(1, 0, "create", {"field": "a", "after": 1}),
        step(2, 10, "update", {"field": "b", "before": "x", "after": "y"}),
    ]
    state = replay(history, T0 + 10)
    assert state.gaps == (Gap(2, "b", MISSING, "x"),)
    assert state.fields == {"a": 1, "b": "y"}


def test_complete_history_unknown_field_with_null_before_matches() -> None:
    history = [
        step(1, 0, "create", {"field": "a", "before": None, "after": 1}),
        step(2, 10, "update", {"field": "b", "before": None, "after": "y"}),
    ]
    assert replay(history, T0 + 10).gaps == ()


def test_removed_field_is_known_absent_even_mid_life() -> None:
    history = [
        step(1, 0, "update", {"field": "a", "before": 1}),
        step(2, 10, "update", {"field": "a", "before": 1, "after": 2}),
    ]
    state = replay(history, T0 + 10)
    assert state.gaps == (Gap(2, "a", MISSING, 1),)
    assert state.complete is False


def test_history_starting_mid_life_adopts_unknown_fields_without_gap() -> None:
    history = [
        step(5, 0, "update", {"field": "status", "before": "sent", "after": "paid"}),
        step(6, 10, "update", {"field": "status", "before": "paid", "after": "void"}),
    ]
    state = replay(history, T0 + 10)
    assert state == EntityState(T0 + 10, True, {"status": "void"}, (5, 6), (), False)


def test_history_starting_mid_life_still_checks_known_fields() -> None:
    history = [
        step(5, 0, "update", {"field": "status", "before": "sent", "after": "paid"}),
        step(6, 10, "update", {"field": "status", "before": "sent", "after": "void"}),
    ]
    assert replay(history, T0 + 10).gaps == (Gap(6, "status", "paid", "sent"),)


def test_change_without_before_is_never_a_gap() -> None:
    history = [
        step(1, 0, "create", {"field": "a", "after": 1}),
        step(2, 10, "update", {"field": "a", "after": 5}),
    ]
    assert replay(history, T0 + 10).gaps == ()


# -- JSON equality --------------------------------------------------------------------------


def gaps_for(after: Any, before: Any) -> tuple[Gap, ...]:
    history = [
        step(1, 0, "create", {"field": "v", "after": after}),
        step(2, 10, "update", {"field": "v", "before": before, "after": "next"}),
    ]
    return replay(history, T0 + 10).gaps


def test_integer_and_float_of_same_value_are_equal() -> None:
    assert gaps_for(1, 1.0) == ()
    assert gaps_for(-0.0, 0) == ()


def test_true_and_one_are_not_equal() -> None:
    assert gaps_for(True, 1) == (Gap(2, "v", True, 1),)
    assert gaps_for(0, False) == (Gap(2, "v", 0, False),)


def test_string_and_number_are_not_equal() -> None:
    assert gaps_for("1", 1) == (Gap(2, "v", "1", 1),)


def test_null_value_is_not_an_absent_field_but_equals_null() -> None:
    assert gaps_for(None, None) == ()
    assert gaps_for(None, 0) == (Gap(2, "v", None, 0),)


def test_objects_compare_by_canonical_form() -> None:
    assert gaps_for({"a": 1, "b": [1.0, {"c": None}]}, {"b": [1, {"c": None}], "a": 1.0}) == ()
    assert gaps_for({"a": 1}, {"a": 1, "b": None}) != ()
    assert gaps_for([1, 2], [2, 1]) != ()


# -- to_dict --------------------------------------------------------------------------------


def test_gap_to_dict_leaves_out_missing_values() -> None:
    assert Gap(3, "b", MISSING, "x").to_dict() == {"seq": 3, "field": "b", "found": "x"}
    assert Gap(3, "b", 1, MISSING).to_dict() == {"seq": 3, "field": "b", "expected": 1}
    assert Gap(3, "b", 1, 2).to_dict() == {"seq": 3, "field": "b", "expected": 1, "found": 2}


def test_state_to_dict_is_json_ready() -> None:
    history = [*invoice_history(), step(4, 300, "update", {"field": "total", "before": 1})]
    assert replay(history, T0 + 300).to_dict() == {
        "at_ms": T0 + 300,
        "exists": True,
        "fields": {"status": "sent"},
        "seqs": [1, 2, 3, 4],
        "gaps": [{"seq": 4, "field": "total", "expected": 12, "found": 1}],
        "complete": True,
    }


# -- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
updates = st.lists(
    st.tuples(
        st.integers(0, 5),  # time step after the previous update (0: a tie)
        st.lists(st.tuples(st.sampled_from("abcd"), json_values), min_size=1, max_size=3),
    ),
    max_size=8,
)


def consistent_history(
    opening: str, plan: list[tuple[int, list[tuple[str, Any]]]]
) -> tuple[list[Step], dict[str, Any]]:
    """Steps whose every before is the previous after, and the last after of each field."""
    last: dict[str, Any] = {}
    steps = [Step(0, T0, opening, ())]
    at = T0
    for seq, (delay, changes) in enumerate(plan, start=1):
        at += delay
        built = []
        for field, after in changes:
            built.append(Change(field, last.get(field, MISSING), after))
            last[field] = after
        steps.append(Step(seq, at, "update", tuple(built)))
    return steps, last


@given(st.sampled_from(["create", "read"]), updates, st.randoms(use_true_random=False))
def test_consistent_updates_make_no_gaps_and_end_on_the_last_afters(
    opening: str, plan: list[tuple[int, list[tuple[str, Any]]]], random: Any
) -> None:
    steps, last = consistent_history(opening, plan)
    at_ms = T0 + 100
    state = replay(steps, at_ms)
    assert state.gaps == ()
    assert state.fields == last
    assert state.complete is (opening == "create")
    shuffled = list(steps)
    random.shuffle(shuffled)
    assert replay(shuffled, at_ms) == state


@given(updates, st.integers(0, 50), st.randoms(use_true_random=False))
def test_input_order_never_changes_the_state_at_any_time(
    plan: list[tuple[int, list[tuple[str, Any]]]], offset: int, random: Any
) -> None:
    steps, _ = consistent_history("create", plan)
    shuffled = list(steps)
    random.shuffle(shuffled)
    assert replay(shuffled, T0 + offset) == replay(steps, T0 + offset)
