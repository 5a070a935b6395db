"""The README's two opening commands stay true: CI runs the test command verbatim."""

import re

from tests.helpers import REPO


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), flags=re.S)
    return [block.strip() for block in blocks[:2]]


def test_ci_runs_the_readme_test_command_verbatim():
    install_and_main, install_and_test = readme_commands()
    assert "pip install" in install_and_main and "wrn fit --config configs/" in install_and_main
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci_lines


def test_the_main_job_config_exists():
    install_and_main, _ = readme_commands()
    config = re.search(r"--config (\S+)", install_and_main).group(1)
    assert (REPO / config).is_file()
