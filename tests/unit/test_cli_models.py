import subprocess
import sys

from console.cli import main


def test_list_prints_a_table(demo_store, capsys):
    assert main(["models", "--store", str(demo_store.root), "list"]) == 0
    out = capsys.readouterr().out
    assert "VERSION" in out and "SHA256" in out
    m = demo_store.manifest("digits", "v2")
    assert m.sha256[:12] in out and "accuracy=" in out


def test_register_then_list(demo_store, tmp_path, capsys):
    src = demo_store.version_dir("digits", "v1")
    store = str(tmp_path / "s")
    argv = [
        "models",
        "--store",
        store,
        "register",
        "digits",
        "v9",
        str(src / "digits-v1.onnx"),
        "--reference",
        str(src / "reference.parquet"),
        "--metric",
        "accuracy=0.5",
    ]
    assert main(argv) == 0
    assert "registered digits/v9" in capsys.readouterr().out
    assert main(argv) == 2
    assert "already registered" in capsys.readouterr().err
    assert main(["models", "--store", store, "list", "digits"]) == 0
    assert "accuracy=0.5" in capsys.readouterr().out


def test_bad_input_is_a_message_not_a_traceback(tmp_path, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    assert main(["models", "--store", str(tmp_path), "register", "m", "v1", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "not a loadable ONNX model" in err and "Traceback" not in err
    assert main(["models", "--store", str(tmp_path), "register", "../m", "v1", str(junk)]) == 2
    assert "not allowed" in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "console.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "models" in out.stdout
