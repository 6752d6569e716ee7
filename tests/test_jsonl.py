"""Evidence files are read while other processes append to them."""

from lab.data.jsonl import JsonLinesTail, read_jsonl


def test_a_tail_reads_each_complete_line_once(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = JsonLinesTail(path)
    assert tail.read_new() == []  # not written yet
    path.write_text('{"n": 1}\n{"n": 2}\n{"n": ', "utf-8")  # the third is being written
    assert tail.read_new() == [{"n": 1}, {"n": 2}]
    assert tail.read_new() == []
    with path.open("a", encoding="utf-8") as fh:
        fh.write('3}\n{"n": 4}\n')
    assert tail.read_new() == [{"n": 3}, {"n": 4}]


def test_a_torn_line_is_skipped_not_fatal(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"n": 1}\n{"n": \n{"n": 2}\n', "utf-8")  # a writer killed mid-line
    assert read_jsonl(path) == [{"n": 1}, {"n": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []
