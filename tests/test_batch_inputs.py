"""Batch inputs: folders, globs, manifests, duplicates, symlink loops, unreadable files."""

from __future__ import annotations

import json

import makers
import pytest
from PIL import Image

from ffaa.batch.inputs import discover, item_from_dict, item_to_dict
from ffaa.errors import InputError


def png(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    return makers.save(makers.noisy_rgb(16, 16, seed), path, "PNG")


def test_folder_is_walked_recursively_with_duplicates_grouped_and_loops_cut(tmp_path):
    a = png(tmp_path / "a.png", 1)
    png(tmp_path / "deep" / "er" / "b.png", 2)
    (tmp_path / "deep" / "same_as_a.png").write_bytes(a.read_bytes())
    (tmp_path / ".hidden.png").write_bytes(a.read_bytes())
    (tmp_path / "deep" / "loop").symlink_to("..")
    found = discover([str(tmp_path)])
    by_id = {i.item_id: i for i in found.items}
    assert set(by_id) == {"a.png", "deep/er/b.png"}  # hidden skipped, the copy merged into a.png
    assert [s.item_id for s in by_id["a.png"].sources] == ["a.png", "deep/same_as_a.png"]
    assert by_id["a.png"].kind == "image" and by_id["a.png"].key == f"sha256:{by_id['a.png'].sha256}"
    assert any("symlink loop" in w for w in found.warnings)


def test_kind_comes_from_content_not_extension(tmp_path):
    makers.save(Image.new("RGB", (8, 8)), tmp_path / "png_named.mp4", "PNG")
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "zero.jpg").write_bytes(b"")
    kinds = {i.item_id: i.kind for i in discover([str(tmp_path)]).items}
    assert kinds == {"png_named.mp4": "image", "text.png": "other", "zero.jpg": "other"}


def test_csv_and_jsonl_manifests_give_ids_and_labels_relative_to_the_manifest(tmp_path):
    png(tmp_path / "data" / "x.png", 1)
    png(tmp_path / "data" / "y.png", 2)
    (tmp_path / "data" / "list.csv").write_text("Path,id,label\nx.png,first,fake\ny.png,,real\n")
    (tmp_path / "other.jsonl").write_text(json.dumps({"path": "data/x.png", "id": "again"}) + "\n\n")
    items = discover([str(tmp_path / "data" / "list.csv"), str(tmp_path / "other.jsonl")]).items
    assert [(i.item_id, i.label) for i in items] == [("first", "fake"), ("y.png", "real")]
    assert [s.item_id for s in items[0].sources] == ["first"]  # same path listed twice: kept once


def test_manifest_without_path_column_and_missing_files(tmp_path):
    (tmp_path / "bad.csv").write_text("file,label\na.png,real\n")
    with pytest.raises(InputError, match="no 'path' column .*file, label"):
        discover([str(tmp_path / "bad.csv")])
    (tmp_path / "gone.jsonl").write_text('{"path": "nowhere.png"}\n')
    (item,) = discover([str(tmp_path / "gone.jsonl")]).items
    assert item.kind == "unreadable" and "no such file" in item.problem and item.key.startswith("path:")


def test_globs_broken_symlinks_and_bad_arguments(tmp_path):
    png(tmp_path / "a.png", 1)
    png(tmp_path / "b.jpg", 2)
    (tmp_path / "dangling.png").symlink_to(tmp_path / "missing.png")
    items = discover([str(tmp_path / "*.png")]).items
    assert {i.item_id for i in items} == {"a.png", "dangling.png"}
    dangling = next(i for i in items if i.item_id == "dangling.png")
    assert dangling.problem.endswith("broken symlink (its target does not exist)")
    with pytest.raises(InputError, match="input not found: .*nothing.png"):
        discover([str(tmp_path / "nothing.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no input files found in .*empty.*holds no files"):
        discover([str(tmp_path / "empty")])


def test_items_survive_the_trip_to_another_process(tmp_path):
    (item,) = discover([str(png(tmp_path / "a.png"))]).items
    assert item_from_dict(json.loads(json.dumps(item_to_dict(item)))) == item


def test_batch_modules_import_light():
    import subprocess
    import sys

    code = ("import sys, ffaa.batch, ffaa.commands.batch\n"
            "print(' '.join(m for m in ('torch', 'ray', 'av', 'cv2', 'dlib', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_a_folder_and_its_own_manifest_keep_the_manifest_ids_and_labels(tmp_path):
    png(tmp_path / "a.png", 1)
    png(tmp_path / "b.png", 2)
    (tmp_path / "labels.csv").write_text("path,id,label\na.png,A,real\nb.png,B,fake\n")
    (tmp_path / "more.jsonl").write_text(json.dumps({"path": "a.png", "label": "fake"}) + "\n")
    found = discover([str(tmp_path), str(tmp_path / "labels.csv"), str(tmp_path / "more.jsonl")])
    assert [(i.item_id, i.label) for i in found.items] == [("A", "real"), ("B", "fake")]  # no labels.csv item
    assert any("a.png is listed with label 'real'" in w and "keeping 'real'" in w for w in found.warnings)


def test_files_inside_the_output_folder_are_never_inputs(tmp_path):
    png(tmp_path / "a.png", 1)
    png(tmp_path / "out" / "thumbs" / "t.png", 2)
    (tmp_path / "out" / "summary.csv").write_text("path\n../a.png\n")
    found = discover([str(tmp_path)], exclude=tmp_path / "out")
    assert [i.item_id for i in found.items] == ["a.png"]
    assert any("2 file(s) inside the output folder" in w for w in found.warnings)


def test_csv_blank_rows_line_numbers_and_semicolons(tmp_path):
    png(tmp_path / "a.png", 1)
    (tmp_path / "list.csv").write_text("path,id\n\n\na.png,x\n,,\n")  # ",,": a spreadsheet's empty row
    assert [i.item_id for i in discover([str(tmp_path / "list.csv")]).items] == ["x"]
    (tmp_path / "bad.csv").write_text("path,id\n\n\na.png,x\n , y\n")
    with pytest.raises(InputError, match=r"bad.csv:5: empty 'path'"):
        discover([str(tmp_path / "bad.csv")])
    (tmp_path / "semi.csv").write_text("Path;ID;Label\na.png;x;fake\n")
    assert [(i.item_id, i.label) for i in discover([str(tmp_path / "semi.csv")]).items] == [("x", "fake")]


@pytest.mark.parametrize(("row", "message"), [
    ({"path": ["a.png"]}, "'path' must be text or a number"),
    ({"path": "a.png", "label": {"x": 1}}, "'label' must be text or a number"),
    ({"path": "a\0.png"}, "'path' contains a NUL character"),
])
def test_jsonl_rows_of_the_wrong_type_are_refused(tmp_path, row, message):
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match=f"m.jsonl:1: {message}"):
        discover([str(tmp_path / "m.jsonl")])


def test_empty_files_are_not_duplicates_of_each_other(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.mp4").write_bytes(b"")
    items = discover([str(tmp_path)]).items
    assert [(i.item_id, len(i.sources), i.problem) for i in items] == [
        ("a.jpg", 1, f"{tmp_path / 'a.jpg'}: empty file (0 bytes)"),
        ("b.mp4", 1, f"{tmp_path / 'b.mp4'}: empty file (0 bytes)")]


def test_a_symlink_to_itself_is_called_a_loop(tmp_path):
    (tmp_path / "self.png").symlink_to("self.png")
    (item,) = discover([str(tmp_path)]).items
    assert item.problem.endswith("symlink loop (the link leads back to itself)")
