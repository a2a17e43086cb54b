"""When the model's summary is folded away behind the quotes (inference.citations)."""

from __future__ import annotations

from inference.citations import summary_withheld_reason

THREE = (
    "Offer anticoagulation at a score of 2 or more [S1]. Apixaban is preferred over warfarin "
    "in most patients [S2]. Reassess the bleeding risk every year at review [S1]."
)


def test_a_summary_of_markers_only_is_withheld() -> None:
    assert "no words" in summary_withheld_reason(
        "[S1] [S2] [S3]", flagged_sentences=0, max_share=0.5
    )
    assert "no words" in summary_withheld_reason("", flagged_sentences=0, max_share=0.5)


def test_a_mostly_unsupported_summary_is_withheld_with_the_count() -> None:
    assert summary_withheld_reason(THREE, flagged_sentences=2, max_share=0.5) == (
        "2 of 3 sentences of the summary were not supported by the sources"
    )


def test_a_mostly_supported_summary_is_shown() -> None:
    assert summary_withheld_reason(THREE, flagged_sentences=1, max_share=0.5) == ""
    assert summary_withheld_reason(THREE, flagged_sentences=0, max_share=0.0) == ""


def test_the_share_is_a_setting_and_counts_never_exceed_the_sentences() -> None:
    assert summary_withheld_reason(THREE, flagged_sentences=1, max_share=0.3)
    assert summary_withheld_reason(THREE, flagged_sentences=9, max_share=0.99) == (
        "3 of 3 sentences of the summary were not supported by the sources"
    )
