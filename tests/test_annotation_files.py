"""bat_jax.data.annotation_files: the readers every data set's annotation parser stands on."""

import json

import pytest

from bat_jax.data import annotation_files as af


def test_text_lines_number_the_file_lines_and_skip_blank_ones(tmp_path):
  p = tmp_path / 'list.txt'
  p.write_text('  a 1 \n\n\t\nb 2\n   \nc 3', encoding='utf-8')
  assert list(af.text_lines(str(p))) == [(1, 'a 1'), (4, 'b 2'), (6, 'c 3')]


def test_text_lines_name_a_missing_file_as_what_it_is(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"UCF-101 split list '.*nope\.txt' does not exist"):
    list(af.text_lines(str(tmp_path / 'nope.txt'), 'UCF-101 split list'))


def test_find_file_looks_in_root_then_its_subfolder(tmp_path):
  (tmp_path / 'Charades').mkdir()
  (tmp_path / 'Charades' / 'a.csv').write_text('x')
  (tmp_path / 'b.csv').write_text('x')
  assert af.find_file(str(tmp_path), 'a.csv', 'Charades') == str(tmp_path / 'Charades' / 'a.csv')
  assert af.find_file(str(tmp_path), 'b.csv', 'Charades') == str(tmp_path / 'b.csv')
  with pytest.raises(FileNotFoundError, match=r"c\.csv not found under .* \(or its annotations/\)"):
    af.find_file(str(tmp_path), 'c.csv')


def test_json_entries_name_the_first_entry_without_the_keys(tmp_path):
  p = tmp_path / 'train.json'
  p.write_text(json.dumps([{'id': '1', 'template': 't'}, {'id': '2'}]))
  with pytest.raises(ValueError, match=r'train\.json: entry 1 has no "id" / "template"'):
    af.json_entries(str(p), ('id', 'template'))
  p.write_text(json.dumps({'id': '1'}))
  with pytest.raises(ValueError, match='expected a non-empty list'):
    af.json_entries(str(p), ('id',))
  p.write_text('[{"id": ')
  with pytest.raises(ValueError, match='not valid JSON'):
    af.json_entries(str(p), ('id',))
  p.write_text(json.dumps([{'id': '7', 'template': 'x', 'extra': 0}]))
  assert af.json_entries(str(p), ('id', 'template')) == [{'id': '7', 'template': 'x', 'extra': 0}]


def test_check_labels_names_the_first_label_out_of_range():
  af.check_labels([0, 3, 4], 5, 'f.txt')
  with pytest.raises(ValueError, match=r'f\.txt: label 5 outside \[0, 5\)'):
    af.check_labels([0, 5, -1], 5, 'f.txt')
  with pytest.raises(ValueError, match=r'label -1 outside'):
    af.check_labels([-1], 5, 'f.txt')
