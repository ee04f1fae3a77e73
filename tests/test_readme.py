import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(marker: str) -> str:
    text = README.read_text()
    match = re.search(re.escape(marker) + r".*?\n```python\n(.*?)```", text,
                      re.S)
    assert match, f"README has no python block after {marker!r}"
    return match.group(1)


def test_use_the_layer_example_runs():
    code = readme_block("<!-- readme-example: the test suite runs this block")
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
