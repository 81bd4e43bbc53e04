"""engine.zoo, engine.export, engine.serve and engine.tune: usage errors in one line, exit 2;
the zoo's static facts answer without building a model (issue 21, items 2-5, 9, 10)."""
from __future__ import annotations

import time


def test_zoo_list_and_info_answer_in_under_two_seconds(cli):
    for args in (("list",), ("info", "vgg11")):
        start = time.perf_counter()
        proc = cli("zoo", *args)
        elapsed = time.perf_counter() - start
        assert proc.returncode == 0, proc.stderr
        assert elapsed < 2.0, (args, elapsed)
    assert "timm vgg11: 132.863 M params, 7.609 GMACs, random weights (seed 0)" in proc.stdout


def test_zoo_info_unknown_model_is_a_usage_error(cli, one_line_error):
    one_line_error(cli("zoo", "info", "resnet5O"), "model 'resnet5O' is not in the zoo")


def test_export_refuses_bad_sizes_and_save_dirs_before_torch(cli, one_line_error, tmp_path):
    for size in ("0", "-5"):
        one_line_error(cli("export", "--model-name", "vgg11", "--size", size),
                       f"--size must be at least 32, got {size}")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    one_line_error(cli("export", "--model-name", "vgg11", "--save_dir", a_file), f"--save-dir {a_file}: is a file")
    one_line_error(cli("export", "--model-name", "vgg12"), "model 'vgg12' is not in the zoo")
    one_line_error(cli("export", "--model-name", "vgg11", "--weights", tmp_path / "w.pth"), "--weights", "no such file")


def test_serve_and_tune_say_a_directory_is_a_directory(cli, one_line_error, tmp_path):
    one_line_error(cli("serve", "--onnx", tmp_path), f"--onnx {tmp_path}: is a directory, not a file")
    one_line_error(cli("serve", "--model", "resnet5O"), "model 'resnet5O' is not in the zoo")
    one_line_error(cli("tune", tmp_path), f"model {tmp_path}: is a directory, not a file")


def test_client_endpoint_without_scheme_and_no_server(cli, one_line_error, photo_folder):
    image = next(photo_folder.rglob("*.jpg"))
    one_line_error(cli("client", "--connect", "localhost:5599", image),
                   "--connect localhost:5599: not a ZeroMQ endpoint")
    one_line_error(cli("client", "--connect", "tcp://127.0.0.1:5599", photo_folder / "nope.jpg"),
                   "nope.jpg: no such file")
    start = time.perf_counter()
    proc = cli("client", "--connect", "tcp://127.0.0.1:5599", image)
    assert time.perf_counter() - start < 15
    one_line_error(proc, "nothing answered at tcp://127.0.0.1:5599", code=1)
