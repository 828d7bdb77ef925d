"""`published` prints a rich table: ids and reliability are never cut (issue 18: ids cut at 58
characters, reliability at "medi")."""

from simulator.cli.report import published_report


def test_published_report_keeps_full_ids_and_reliability():
    long_id = "hagemann2023_alephalpha_layouts_" + "x" * 60
    result = {"records": [
        {"id": long_id, "reliability": "medium", "measured_iteration_time_s": 1.5,
         "predicted_iteration_time_s": 1.2, "error": -0.2, "predicted_mfu": 0.41, "fits": True},
        {"id": "nemo_long_sequence_cp_1", "reliability": "medium", "skipped": "no cp kernel table"}],
        "summary": {"reliability": "all", "count": 1, "skipped": 1, "mape": 0.2, "median_abs_error": 0.2,
                    "max_abs_error": 0.2}}
    text = published_report(result)
    assert long_id in text
    assert "medium" in text and "1.500" in text and "1.200" in text and "-20.0%" in text
    assert "skipped: no cp kernel table" in text
    assert "all records: count 1, skipped 1, MAPE 20.0%" in text
    assert "┃" in text or "|" in text      # a table, not hand-padded columns
