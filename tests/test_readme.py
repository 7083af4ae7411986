"""The README's examples run, and its quickstart is the file it names."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

from reactor import Event
from reactor.testing import Capture

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


def test_the_quickstart_block_is_the_example_file() -> None:
    assert BLOCKS[0] == (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")


#: What the examples that print write to stdout, each found by a line of its code; every
#: other example prints nothing.
EXPECTED_OUTPUT = {
    'print("audit", event.type, event.data)': (
        "audit order.created {'order': 1}\n"
        "audit order.paid {'order': 1}\n"
        "3 deliveries; 0 dead letters\n"
    ),
    'print("booked", event.data["amount"])': "booked 42\n",
    'print("T minus", event.data)': "T minus 3\nT minus 2\nT minus 1\n",
    'print("shipping", order.id,': (
        "shipping 1 ['pear'] from /shop\n"
        "the event's data does not fit Order: data.id: expected int, got str\n"
        "DataValidationError after 1 attempt\n"
    ),
    'print("rendering", event.data["report"])': "rendering sales\n",
    'print("reminding", event.data["cart"]': "reminding 7 on day 3.0\n",
    'print(f"t={clock.monotonic()}: storing"': (
        "t=0.0: storing [0, 1, 2]\n"
        "t=0.0: mail to ann\n"
        "t=0.5: storing [3]\n"
        "t=0.5: mail to bob\n"
        "t=1.0: mail to cy\n"
        "t=2.0: reindexing README.md version 3\n"
        "2 saves skipped\n"
    ),
    'print("charging order", event.data["order"])': "charging order 7\n1 duplicate dropped\n",
    'print("mail to", event.data,': (
        "mail to buyer | cause: invoice-7 | chain: order-7\n"
        "mail to accounts | cause: invoice-7 | chain: order-7\n"
    ),
}


def test_every_expected_output_belongs_to_an_example() -> None:
    for line in EXPECTED_OUTPUT:
        assert sum(line in block for block in BLOCKS[1:]) == 1, line


@pytest.mark.parametrize("index", range(1, len(BLOCKS)))
def test_readme_example_runs(
    index: int,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write files (a queue's database)
    # The secrets that the ingress examples read from the environment, as a deployment sets.
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "It's a Secret to Everybody")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_test_secret")
    monkeypatch.setenv("EVENTS_TOKEN", "a-long-random-token")
    monkeypatch.setenv("MINIO_WEBHOOK_TOKEN", "a-minio-token")
    block = BLOCKS[index]
    exec(compile(block, f"README.md example {index}", "exec"), {"__name__": "__readme__"})
    expected = next((out for line, out in EXPECTED_OUTPUT.items() if line in block), "")
    assert capsys.readouterr().out == expected, (
        f"README example {index} printed something else; if it should, put its output in "
        "EXPECTED_OUTPUT"
    )


def test_install_and_test_commands_are_what_ci_runs() -> None:
    section = README.split("## Install and test", 1)[1]
    commands = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert commands is not None
    assert commands.group(1).splitlines() == ["python3 -m pip install -e '.[dev]'", "pytest"]
    assert "## Install and test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_the_quickstart_app_handles_orders(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.app
    capture = Capture()
    app.subscribe("order.created", capture, name="capture")
    async with app:
        with anyio.fail_after(5):
            [event] = await capture.wait_for(1)
    assert isinstance(event, Event) and event.data == {"id": 1}
    out = capsys.readouterr().out
    assert "audit: order.created from /shop: {'id': 1}" in out
    assert "emailing the confirmation of order 1" in out
