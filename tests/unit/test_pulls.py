"""The pull board's decisions: what /info and STATUS= say, and how much it keeps."""

from __future__ import annotations

from node_agent.pulls import PullBoard, split_tag


def test_board_keeps_a_bounded_history_and_a_short_status_line() -> None:
    board = PullBoard(keep_finished=2, log_every=0)
    assert board.status_text() == ""
    pulls = [board.begin(f"img{i}:1", "test") for i in range(5)]
    pulls[0].feed(
        {"id": "l1", "status": "Downloading", "progressDetail": {"current": 1, "total": 4}}
    )
    assert board.status_text() == "pulling img0:1 25%, img1:1, img2:1 and 2 more"
    for progress in pulls[:4]:
        board.finish(progress, None if progress is not pulls[3] else "denied")
    snapshot = board.snapshot()
    assert [p["image"] for p in snapshot["active"]] == ["img4:1"]
    # newest first, and only two kept
    assert [p["image"] for p in snapshot["recent"]] == ["img3:1", "img2:1"]
    assert snapshot["recent"][0]["error"] == "denied" and snapshot["recent"][0]["done"] is True
    assert board.status_text() == "pulling img4:1"


def test_extracting_counts_a_layer_as_downloaded() -> None:
    board = PullBoard()
    progress = board.begin("x", "test")
    progress.feed(
        {"id": "a", "status": "Downloading", "progressDetail": {"current": 5, "total": 9}}
    )
    progress.feed({"id": "a", "status": "Extracting", "progressDetail": {"current": 1, "total": 9}})
    assert progress.counts() == {"layers": 1, "layers_done": 1, "bytes": 9, "total_bytes": 9}
    assert split_tag("x") == ("x", "latest")
