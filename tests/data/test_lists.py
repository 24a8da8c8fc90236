"""Annotation files of the papers' layouts -> samples; bad lines named by file and line."""
import json

import pytest

from zoo.data import DataError, read_samples

from .synth import classes, write_frame_dirs, write_list, write_video

NAMES = [f"class {i}" for i in range(8)]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    return root, write_frame_dirs(root, n_videos=3)


def test_list_file_over_frame_directories(frames, tmp_path):
    root, rows = frames
    s = read_samples(write_list(tmp_path / "val.txt", rows), root=root, labels=8)
    assert [(x.id, x.num_frames, x.label) for x in s] == [(p, n, lab) for p, n, lab in rows]
    assert s[0].path == str(root / "vid_0") and s.skipped == []
    # two-column video lists (path label), absolute paths, comments and blank lines
    (tmp_path / "two.txt").write_text(f"# comment\n\n{root / 'vid_1'} 3\n")
    (two,) = read_samples(tmp_path / "two.txt", labels=8)
    assert two.num_frames is None and two.label == 3 and two.path == str(root / "vid_1")


@pytest.mark.parametrize("line, error", [
    ("vid_9 8 1", "vid_9 does not exist"),
    ("vid_0 7 1", "has 8 image files, the list says 7"),
    ("vid_0 8 8", "label 8 is out of range for 8 classes"),
    ("vid_0 8 -1", "label -1 is negative"),
    ("vid_0 eight 1", "frame count 'eight' is not a number"),
    ("vid_0", "expected '<path> <num_frames> <label>'"),
])
def test_bad_lines_name_file_and_line(frames, tmp_path, line, error):
    root, rows = frames
    lst = tmp_path / "bad.txt"
    lst.write_text(f"vid_1 {rows[1][1]} 0\n{line}\nvid_2 {rows[2][1]} 2\n")
    with pytest.raises(DataError, match=rf"bad\.txt:2: .*{error}"):
        read_samples(lst, root=root, labels=8 if "negative" not in error else None)
    s = read_samples(lst, root=root, labels=8 if "negative" not in error else None, skip_bad=True)
    assert [x.id for x in s] == ["vid_1", "vid_2"]
    assert len(s.skipped) == 1 and s.skipped[0].line == 2 and error.split("'")[0] in s.skipped[0].reason


def test_duplicate_ids_and_template_count(frames, tmp_path):
    root, rows = frames
    lst = tmp_path / "dup.txt"
    lst.write_text(f"vid_0 {rows[0][1]} 0\nvid_0 {rows[0][1]} 0\n")
    with pytest.raises(DataError, match=r"dup\.txt:2: video id 'vid_0' is listed twice \(first on line 1\)"):
        read_samples(lst, root=root)
    lst.write_text(f"vid_0 {rows[0][1]} 0\n")
    with pytest.raises(DataError, match="has 0 files matching '{:05d}.jpg'"):
        read_samples(lst, root=root, template="{:05d}.jpg")
    assert len(read_samples(lst, root=root, template="img_{:05d}.jpg")) == 1


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for v, (lev, d) in enumerate(classes(3)):
        write_video(root / f"{1000 + v}.mp4", lev, d, n=6)
    return root


def test_ssv2_json_maps_templates_to_names(videos, tmp_path):
    names = ["Holding something", "Putting something on something", "Pushing something from left to right"]
    ann = [{"id": "1000", "template": "Putting [something] on [something]", "label": "putting a cup on a box"},
           {"id": 1001, "template": "Holding [something]", "label": "holding a pen"},
           {"id": "1002", "template": "Pushing [something] from left to right", "label": "..."}]
    (tmp_path / "val.json").write_text(json.dumps(ann))
    s = read_samples(tmp_path / "val.json", root=videos, labels=names)
    assert [(x.id, x.label) for x in s] == [("1000", 1), ("1001", 0), ("1002", 2)]
    assert s[0].path.endswith("1000.mp4")
    ann[1]["template"] = "Holding [something] behind [something]"
    (tmp_path / "val.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match=r"val\.json:2: unknown class name 'Holding something behind something'"):
        read_samples(tmp_path / "val.json", root=videos, labels=names)
    with pytest.raises(DataError, match=r"val\.json:1: no video for '1000'"):
        read_samples(tmp_path / "val.json", root=tmp_path, labels=names)


def test_kinetics_csv_layouts(tmp_path):
    names = ["abseiling", "air drumming", "playing guitar"]
    root = tmp_path / "k400"
    write_video(root / "abc_000010_000020.mp4", 0, 1, n=4)
    write_video(root / "playing guitar" / "xyz_000000_000010.mp4", 1, 0, n=4)    # a folder per class
    csv = tmp_path / "validate.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split,is_cc\n"
                   "abseiling,abc,10,20,val,0\n\"playing guitar\",xyz,0,10,val,0\n")
    s = read_samples(csv, root=root, labels=names)
    assert [(x.id, x.label) for x in s] == [("abc_000010_000020", 0), ("xyz_000000_000010", 2)]
    csv.write_text("label,youtube_id,time_start,time_end,split\nair_drumming,nope,0,10,val\nmoonwalking,abc,10,20,val\n")
    s = read_samples(csv, root=root, labels=names, skip_bad=True)
    assert s == [] and [b.line for b in s.skipped] == [2, 3]
    assert "no video for 'nope'" in s.skipped[0].reason and "unknown class name 'moonwalking'" in s.skipped[1].reason


def test_generic_csv(videos, tmp_path):
    csv = tmp_path / "any.csv"
    csv.write_text("path,label\n1000.mp4,class 2\n1001.mp4,1\n")
    s = read_samples(csv, root=videos, labels=NAMES)
    assert [(x.id, x.label) for x in s] == [("1000.mp4", 2), ("1001.mp4", 1)]
    with pytest.raises(DataError, match=r"any\.csv:2: class name 'class 2' but no label list"):
        read_samples(csv, root=videos)
