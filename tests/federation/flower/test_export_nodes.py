"""export_nodes: the command's refusals (its success is followed in test_deployment_guide)."""

from __future__ import annotations

import pytest

from fedjax_rhd.federation.flower import export_nodes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy=centralized"], "strategy=centralized pools every row"),
        (["no_such_key=1"], "Could not override 'no_such_key'"),
        (["split.val_fraction=2.0"], "val_fraction"),
    ],
)
def test_bad_configs_exit_2_naming_the_problem(tmp_path, capsys, overrides, message):
    assert export_nodes.main([*overrides, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_folder_without_other_files(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert export_nodes.main(["--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("x")
    assert export_nodes.main(["--out", str(tmp_path / "out")]) == 2
    assert "holds other files ['notes.txt']" in capsys.readouterr().err


def test_out_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_nodes.main(["split=five"])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err
