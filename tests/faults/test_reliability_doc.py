"""docs/reliability.md lists exactly the cases the fault suite checks."""

from reliability_table import DOC, fault_cases, render


def test_reliability_doc_matches_the_fault_suite():
    assert DOC.is_file(), f"{DOC} is missing; run: python tests/faults/reliability_table.py > docs/reliability.md"
    assert DOC.read_text() == render(), (
        "docs/reliability.md is out of date with tests/faults; run: python tests/faults/reliability_table.py > docs/reliability.md"
    )


def test_every_fault_test_states_case_and_outcome():
    cases = fault_cases()
    assert len(cases) >= 20
    for case in cases:
        assert case["case"].strip() and case["outcome"].strip(), case["test"]
