"""The `ivcr index` contract on real videos: exit codes (0 all done, 3 some inputs failed, 1 none
could be done), `--json` reports, folders and manifests read the same way wherever they appear,
and byte-identical copies recorded as aliases (no re-encoding), searchable under their own path."""
from __future__ import annotations

import json
import shutil

from ivcr_engine.cli import main
from ivcr_engine.index import Index, IndexStore


def run(capsys, *argv) -> tuple[int, dict]:
    code = main(["index", "--no-speech", "--json", *map(str, argv)])
    return code, json.loads(capsys.readouterr().out)


def test_exit_codes_json_manifests_and_aliases(shared_data, tmp_path, capsys):
    videos = shared_data / "videos"
    idx = tmp_path / "idx"
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    shutil.copy(videos / "dog_walk.mp4", a)
    shutil.copy(videos / "dog_walk.mp4", b)

    code, rep = run(capsys, a, "--index", idx)
    assert code == 0 and rep["added"] == [str(a)] and rep["exit_code"] == 0
    clips = rep["clips"]

    # the same bytes under another name: an alias, not a second encoding
    code, rep = run(capsys, b, "--index", idx)
    assert code == 0 and rep["added"] == [] and rep["aliased"] == [{"path": str(b), "same_as": str(a)}]
    with IndexStore(idx) as s:
        assert s.row_count() == clips and len(s.videos()) == 1
        assert s.find_video_by_path(str(b))["path"] == str(a)
    code, rep = run(capsys, b, "--index", idx)
    assert code == 0 and rep["skipped"] == [str(b)]  # known under that name already
    hits = Index.open(idx).search("a dog walking", k=3)
    assert [(h.path, h.aliases) for h in hits] == [(str(a), [str(b)])]
    assert main(["search", "--index", str(idx), "a dog walking"]) == 0
    assert f"(also {b})" in capsys.readouterr().out

    # removing one name keeps the video under the other
    code, rep = run(capsys, "--index", idx, "--remove", a)
    assert code == 0 and rep["removed"] == [f"{a} (still indexed as {b})"]
    hits = Index.open(idx).search("a dog walking", k=3)
    assert [(h.path, h.aliases) for h in hits] == [(str(b), [])]

    # a folder holding a video, a manifest (naming a video elsewhere) and a broken file
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(videos / "carphone_pristine.mp4", folder / "carphone.mp4")
    shutil.copy(videos / "bigbuckbunny.mp4", tmp_path / "elsewhere.mp4")
    (folder / "sub" / "list.txt").write_text("# a manifest inside a folder is read, not skipped\n../../elsewhere.mp4\n")
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 100)
    code, rep = run(capsys, folder, "--index", idx)
    assert code == 3 and rep["exit_code"] == 3
    assert sorted(rep["added"]) == sorted([str(folder / "carphone.mp4"), str(tmp_path / "elsewhere.mp4")])
    assert [f["path"] for f in rep["failed"]] == [str(folder / "broken.mp4")]

    # the same manifest given directly reads the same way (everything known by now)
    code, rep = run(capsys, folder / "sub" / "list.txt", "--index", idx)
    assert code == 0 and rep["skipped"] == [str(tmp_path / "elsewhere.mp4")]

    # nothing could be done: 1
    code, rep = run(capsys, tmp_path / "missing.mp4", folder / "broken.mp4", "--index", idx)
    assert code == 1 and len(rep["failed"]) == 2 and not rep["added"]
    code, rep = run(capsys, "--index", idx, "--remove", tmp_path / "never-indexed.mp4")
    assert code == 1 and rep["failed"] == [{"path": str(tmp_path / "never-indexed.mp4"), "error": "not in the index"}]

    # removing the last name removes the video
    code, rep = run(capsys, "--index", idx, "--remove", b)
    assert code == 0 and rep["removed"] == [str(b)]
    assert all(h.path != str(b) for h in Index.open(idx).search("a dog walking", k=5))


def test_usage_errors_exit_2(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["index"])  # --index missing
    assert exc.value.code == 2
