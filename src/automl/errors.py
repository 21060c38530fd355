"""Exit codes and the one error type for bad input (config, search space, flags)."""

from __future__ import annotations

EXIT_OK = 0
"""Success."""
EXIT_FAILURE = 1
"""Anything that is not the user's input: a crash, a diverged run, a failed study."""
EXIT_BAD_INPUT = 2
"""Bad input: config, search space or flags. Printed as one message, never a traceback."""


class ConfigError(Exception):
    """Bad input, reported as one line naming the file, the key, the value, the rule and the fix."""

    def __init__(self, *, file: str, key: str, value: object, rule: str, fix: str = "") -> None:
        self.file = file
        self.key = key
        self.value = value
        self.rule = rule
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one-line report: file, key, value, the rule broken, then the fix if any."""
        text = f"{self.file}: `{self.key}` is {self.value!r}, but {self.rule}."
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


def bad_flag(flag: str, value: object, rule: str, fix: str) -> ConfigError:
    """One command-line mistake: exit 2 with this message."""
    return ConfigError(file="command line", key=flag, value=value, rule=rule, fix=fix)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped a stage: what finished is recorded; `resume` says how to go on."""

    def __init__(self, stage: str, resume: str) -> None:
        self.stage = stage
        self.resume = resume
        super().__init__(f"{stage} interrupted; continue with: {resume}")
