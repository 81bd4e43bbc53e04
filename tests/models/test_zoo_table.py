"""The catalog's committed table (engine/models/zoo_table.json) is what the built networks measure.

``ZOO_TABLE_WRITE=1 pytest tests/models/test_zoo_table.py`` rewrites the file from the
measurement (after adding a model, say); without it a difference fails the test.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from engine.models import catalog, zoo


def test_committed_table_matches_the_measured_networks():
    measured = catalog.table_text(zoo.measured_table())
    if os.environ.get("ZOO_TABLE_WRITE") == "1":
        catalog.TABLE_FILE.write_text(measured)
        catalog.entries.cache_clear()
    assert catalog.TABLE_FILE.read_text() == measured, (
        f"{catalog.TABLE_FILE} is stale: rerun this test with ZOO_TABLE_WRITE=1")


def test_every_zoo_key_has_a_table_row_with_the_specs_data_config():
    assert [(e.name, e.library) for e in catalog.entries()] == catalog.zoo_keys()
    for entry, spec in zip(catalog.entries(), zoo.specs(), strict=True):
        assert entry.data_config == spec.data_config


def test_listing_and_describing_the_zoo_import_no_torch_and_answer_fast():
    code = ("import sys, engine.zoo as z; z.main(['list']); z.main(['info', 'vgg16_bn']); "
            "sys.exit(3 if 'torch' in sys.modules or 'timm' in sys.modules else 0)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "vgg16_bn" in proc.stdout and "138.366 M params" in proc.stdout
    assert elapsed < 2.0
